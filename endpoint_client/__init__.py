"""The endpoint's client side (`python -m endpoint_client`): nothing here imports torch.

    client         every HTTP call to the endpoint: predict() and health(), SigV4 or API key
    smoke_test     after a deploy: the served model, a real prediction and the latency
    stack_outputs  the deployed stack's endpoint and model store, from CloudFormation outputs
    batch_job      batch jobs: count, estimate the cost, start and follow (or run on this machine)
    batch_cost     what a batch job costs, from the bench's measured time per image
    cli            the command line (predict, smoke-test, batch)

Names shared with the stacks and the runtime (auth modes, stack outputs, routes,
media types) come from lambda_src.contract.
"""
