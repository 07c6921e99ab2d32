"""Helpers that several test groups share; each group's own fixtures stay in its conftest.py.

images           coloured test pictures, encoded in any format, base64
tiny_model       a tiny real resnet18 that tells the colours apart; manifests; publishing
events           API Gateway proxy events as the deployed API sends them; response bodies
telemetry        CapturedTelemetry: the handler's log and EMF lines, in memory
local_server     `python -m local_endpoint` started and stopped as its own process
silent_store     an S3 endpoint that accepts connections and never answers
imported_models  real-shaped pretrained weights where torchvision, timm and the hub look
"""
