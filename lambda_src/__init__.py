"""Inference runtime: the code inside the Lambda container image.

It owns the model artifact contract (manifest, layout, architecture registry,
preprocessing, error types); `model_training` imports these, never the reverse.
This package never imports aws_cdk.

    handler          the Lambda entry point: one InferenceService, made and loaded at init
    service          InferenceService: routes events, loads the model, retries, logs, metrics
    api_gateway      REST proxy events in, JSON proxy responses out
    predict_request  a POST /predict body and ?top_k=, validated before any image is decoded
    images           image bytes to an upright RGB picture (JPEG, PNG, WebP only, within limits)
    loader           resolve the version, verify the artifact, build, load and warm up the model
    predictor        preprocessing, one forward pass, top-k
    settings         the runtime's environment tunables
    telemetry        JSON logs and CloudWatch EMF metrics
    cpus, timing     how many CPUs torch may use; phase durations
    artifact, architectures, preprocessing, errors, model_store: the shared contract
"""
