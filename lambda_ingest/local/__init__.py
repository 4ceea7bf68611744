"""Embedded local stack for the demo and tests: local S3/SQS/DynamoDB and the Science Archive emulator."""
