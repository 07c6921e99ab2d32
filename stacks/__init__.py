"""The CDK app's stacks and constructs: a stateful model store and a stateless inference stack.

Runtime code (lambda_src, model_training) never imports this package; app.py is the only
place that reads CDK context.
"""
