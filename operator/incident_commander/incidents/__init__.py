"""Incidents: the lifecycle, remediation proposals and their approval quorum, stored in the
policy's DynamoDB table, published to its Kinesis stream, coordinated by its state machine.

``model`` decides (pure), ``store`` keeps (DynamoDB and Kinesis), ``consensus`` talks to Step
Functions, ``service`` puts them together for the API, ``sweeper`` finishes what a crash left
undone. docs/incidents.md describes the whole.
"""
