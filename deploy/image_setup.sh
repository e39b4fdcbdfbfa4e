#!/bin/sh
# Runs as root inside the image build (bentofile.yaml docker.setup_script), after the Python packages are installed.
set -eu

# torch.compile (PTBR_COMPILE) compiles C at run time: Triton builds its CUDA launcher and Inductor its C++ kernels
# against Python.h. The official python:*-slim images ship their Python's headers; a Debian-python base does not,
# so install them only where they are missing (a no-op on the official images).
include="$(python -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
if [ ! -f "$include/Python.h" ]; then
    apt-get install -q -y --no-install-recommends python3-dev
fi
command -v cc >/dev/null
test -f "$include/Python.h"

# The data directory's default ($BENTOML_HOME/f5tts-ptbr-data), owned by the user the service runs as: a volume
# mounted there (compose, `docker run -v`) starts with this owner instead of root, so the service can write to it.
mkdir -p "${BENTOML_HOME:-/home/bentoml/}f5tts-ptbr-data"
chown "${BENTO_USER:-bentoml}:${BENTO_USER:-bentoml}" "${BENTOML_HOME:-/home/bentoml/}f5tts-ptbr-data"
