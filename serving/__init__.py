"""HTTP-side helpers of service.py (starlette/BentoML); the model code stays in ptbr_model."""
