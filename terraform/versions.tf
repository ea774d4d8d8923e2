# Terraform and provider pins, and the one provider configuration.
#
# The AWS provider is held to one minor release (5.100.x): the Glue, S3 and
# Athena resource schemas this stack relies on change between minors, and a
# new minor should be a reviewed diff, not a surprise on `terraform init`.
# Commit .terraform.lock.hcl after the first init so every machine resolves
# the same provider build.

terraform {
  required_version = ">= 1.6, < 2.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.100.0"
    }
  }
}

provider "aws" {
  region = var.region

  # Tags live here, once, not on every resource (terraform-aws-modules
  # style); resources only add a Name where it helps in the console.
  default_tags {
    tags = merge(
      {
        Project   = var.project_name
        ManagedBy = "terraform"
        Component = "market-etl-lakehouse"
      },
      var.tags,
    )
  }
}
