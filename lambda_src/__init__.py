"""Inference runtime: the code inside the Lambda container image.

It owns the model artifact contract (manifest, layout, architecture registry,
preprocessing, error types); `model_training` imports these, never the reverse.
This package never imports aws_cdk.
"""
