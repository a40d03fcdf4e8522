"""The EconLens example estate's pre-existing resources, made in an emulator.

``desired-state/`` (the example estate of ``lensops demo`` and of several
tests) refers to resources that lensops does not create: the scenario
processor Lambda functions with two published versions (aliases point at
them), the RDS instances with a snapshot (runbooks restore from it) and the
DR endpoint parameters. ``seed(endpoint)`` creates them, as an estate that
existed before lensops managed anything would have them.
"""

from __future__ import annotations

import io
import os
import zipfile

import boto3

ENVIRONMENTS = ("dev", "staging", "prod")
REGION = "us-east-1"


def _zip(source: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("handler.py", source)
    return buffer.getvalue()


def seed(endpoint: str) -> None:
    """Create what the EconLens manifests expect to exist before lensops manages anything."""
    kw = {"endpoint_url": endpoint, "region_name": REGION}
    iam = boto3.client("iam", **kw)
    role = iam.create_role(
        RoleName="econlens-lambda",
        AssumeRolePolicyDocument='{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}',
    )["Role"]["Arn"]
    lam = boto3.client("lambda", **kw)
    rds = boto3.client("rds", **kw)
    ssm = boto3.client("ssm", **kw)
    for env in ENVIRONMENTS:
        name = f"econlens-{env}-scenario-processor"
        lam.create_function(
            FunctionName=name, Runtime="python3.12", Role=role, Handler="handler.handle",
            Code={"ZipFile": _zip("def handle(event, context):\n    return {'version': 1}\n")},
        )
        lam.publish_version(FunctionName=name, Description="v1")
        lam.update_function_code(FunctionName=name, ZipFile=_zip("def handle(event, context):\n    return {'version': 2}\n"))
        lam.publish_version(FunctionName=name, Description="v2")
        db = f"econlens-{env}-db"
        rds.create_db_instance(
            DBInstanceIdentifier=db, DBInstanceClass="db.t4g.micro", Engine="postgres",
            MasterUsername="econlens", MasterUserPassword=os.urandom(12).hex(), AllocatedStorage=20,
        )
        rds.create_db_snapshot(DBInstanceIdentifier=db, DBSnapshotIdentifier=f"{db}-seed")
        address = rds.describe_db_instances(DBInstanceIdentifier=db)["DBInstances"][0]["Endpoint"]["Address"]
        ssm.put_parameter(Name=f"/econlens/{env}/db-endpoint", Value=address, Type="String", Overwrite=True)
