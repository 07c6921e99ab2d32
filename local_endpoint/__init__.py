"""The local endpoint: the real Lambda handler behind an HTTP server on 127.0.0.1.

Each HTTP request becomes the API Gateway REST proxy event (payload v1) that the
deployed API would send, the exact handler answers it, and its proxy response goes
back as HTTP. `python -m local_endpoint` serves a model store; `python -m
local_endpoint.demo` trains and publishes the demo model first (`make demo`); `python -m
local_endpoint batch` classifies a folder with the batch function's worker (`make batch`).
"""
