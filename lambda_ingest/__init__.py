"""lambda_ingest: serverless ingester for the OCS Science Archive."""

__version__ = "0.1.0"
