"""What ``/metrics`` answers: BentoML's collection, with the gauges that are read at scrape time up to date.

BentoML calls the service's ``__metrics__`` hook with the text it has *already* collected. Under ``bentoml serve``
our values live in prometheus_client's multiprocess files and are part of that text, so gauges refreshed inside the
hook (voices and jobs on the shared data directory) would show the previous scrape's values. The hook therefore
refreshes them and collects once more through BentoML's own metrics client (the same merge over workers and the same
histogram ordering as the text it was given). Outside multiprocess mode our private registry is appended instead.
"""

from __future__ import annotations

from ptbr_model.metrics import ServiceMetrics, multiprocess_dir


def scrape(collected: str, metrics: ServiceMetrics) -> str:
    if multiprocess_dir() is None:
        return collected + metrics.render()
    # bentoml internal: the client BentoML's /metrics route itself uses (_bentoml_impl/server/app.py, metrics()).
    from bentoml._internal.configuration.containers import BentoMLContainer

    return BentoMLContainer.metrics_client.get().generate_latest().decode("utf-8")
