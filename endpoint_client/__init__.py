"""The endpoint's client side (`python -m endpoint_client`): nothing here imports torch.

    client         every HTTP call to the endpoint: predict() and health(), SigV4 or API key
    smoke_test     after a deploy: the served model, a real prediction and the latency
    stack_outputs  the deployed stack's endpoint and model store, from CloudFormation outputs
    batch_job      batch jobs on the stack: count, estimate the cost, start and follow
    batch_cost     what a batch job costs, from the figures file the bench writes (not its code)
    pricing        Lambda's list prices, vCPUs by memory, latency stretched to them (Amdahl)
    cli            the command line (predict, smoke-test, batch)

This package imports only lambda_src (tests/test_layers.py): model_training, local_endpoint
and bench build on it. Running a batch on this machine is `python -m local_endpoint batch`.
Names shared with the stacks and the runtime (auth modes, stack outputs, routes,
media types) come from lambda_src.contract.
"""
