"""Inference runtime: the code inside the Lambda container image.

It owns the model artifact contract (manifest, layout, architecture registry,
preprocessing, error types) and, in `contract`, every name that crosses a boundary;
`model_training`, `local_endpoint`, `bench` and `stacks` import these, never the
reverse. This package never imports aws_cdk.

    handler          the Lambda entry point: one InferenceService, made and loaded at init
    prefetch         an S3 model's objects read in a thread while torch imports (torch-free)
    snapstart        SnapStart's runtime hooks: the model readied for the snapshot, refreshes after restore
    lean_imports     serving's imports without torch._dynamo, which torchvision pulls in
    service          InferenceService: routes events, maps errors to responses, logs and metrics
    model_holder     ModelHolder: loads the model once, keeps why it failed, retries after a wait
    engines          MODEL_ENGINE: which engine loads the model; only its modules are imported
    loader           the torch engine's `load` verb: resolve the version, verify, build and warm up
    classifier       ImageClassifier: the torch engine's `input`, `predict` and `output` verbs
    onnx_engine      the onnxruntime engine: model.onnx, Pillow + numpy preprocessing, no torch
    ranking          what both engines' classifiers share: predictions, top-k, the response body
    batch_handler    the batch function's entry point (same image, CMD override): Step Functions batches
    batch            BatchWorker: image keys in, one result line per image out (deployed and local)
    api_gateway      REST proxy events in, JSON proxy responses out
    predict_request  a POST /predict body and ?top_k=, validated before any image is decoded
    images           image bytes to an upright RGB picture (JPEG, PNG, WebP only, within limits)
    preprocessing    RGB picture to tensor, as the manifest says
    model_store      store URIs, local and S3 stores, version resolution (torch-free)
    deadlines        total wall-clock bounds: work that ends within one, or is given up
    settings         the runtime's environment tunables
    telemetry        JSON logs and CloudWatch EMF metrics
    cpus, timing     how many CPUs torch may use; phase durations
    contract         environment names, metric names, media types, limits, routes, auth modes
    artifact, architectures, errors: the model artifact contract shared with training
    timm_support     `timm:NAME` architectures; timm is imported only when one is built
"""
