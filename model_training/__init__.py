"""Training, publishing and client side of the project (`python -m model_training`).

    training       train(TrainingConfig) -> TrainingResult; save_output() writes model.pt + manifest.json
    datasets       image folders (ImageFolder layout) and the demo set: split, augmentation, checks
    demo_data      the generated coloured-shapes set; write_examples() saves images to try
    publishing     publish() a training output as an immutable version; list_versions()
    stack_outputs  the deployed stack's model store and endpoint, from CloudFormation outputs
    client         predict(): send an image to the endpoint (raw or JSON, SigV4 or API key)
    cli            the command line

The model artifact contract comes from lambda_src (artifact, architectures,
preprocessing, errors); this package depends on it, never the reverse.
"""
