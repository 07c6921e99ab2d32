"""The image's code run the way Lambda runs it, without Docker or AWS.

`image_build` reads lambda_src/Dockerfile as the builder would, `function` lays out the
image's task root and starts `python -m awslambdaric HANDLER` in it, and `runtime_api` is
the Lambda Runtime API that client talks to. The rehearsal tests (tests/rehearsal) check
the handler with them; the bench (`bench.runtime_client`) times init with them.
"""
