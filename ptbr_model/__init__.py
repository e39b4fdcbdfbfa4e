"""f5tts-ptbr model package: framework-free pieces the BentoML service composes."""
