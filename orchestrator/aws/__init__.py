"""Box types in AWS: pure desired state and planner, boto3 adapters beside them."""
