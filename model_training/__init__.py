"""Training and publishing side of the project (`python -m model_training`).

    training       train(TrainingConfig) -> TrainingResult; save_output() writes model.pt + manifest.json
    datasets       image folders (ImageFolder layout) and the demo set: split, augmentation, checks
    demo_data      the generated coloured-shapes set; write_examples() saves images to try
    importing      torchvision/timm pretrained weights or a user's weights file -> the same artifact
    publishing     publish() a training output as an immutable version; list_versions()
    cli            the command line (`predict` and `smoke-test` are aliases of endpoint_client's)

The model artifact contract comes from lambda_src (artifact, architectures,
preprocessing, errors); this package depends on it, never the reverse. The
client, the smoke test and the stack-output lookup live in endpoint_client.
"""
