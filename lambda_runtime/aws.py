"""The AWS backend: deploy a plan's functions to a real account with boto3, run, tear down.

Resources, all tagged ``moeopt:prefix=<prefix>``: one S3 bucket (weights and intermediates under
``<prefix>/``), one ECR repository for the expert-function image, one IAM role with a
least-privilege policy (its own log groups, and Get/Put on the bucket prefix only), and one Lambda
function per plan function (PackageType Image). The image build context (Dockerfile FROM
``public.ecr.aws/lambda/python:3.11``, the handler, requirements) is generated here; building
and pushing it needs Docker, and without Docker the context is written and the build skipped
with a message. Credentials come from boto3's usual chain and are never logged or printed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lambda_runtime.deploy import (
    Deployment,
    deploy_plan,
    function_name,
    parse_plan,
    plan_dict,
    teardown,
)
from lambda_runtime.model import MoEExport

log = logging.getLogger(__name__)

BASE_IMAGE = "public.ecr.aws/lambda/python:3.11"
HANDLER_FILES = ("__init__.py", "codec.py", "model.py", "handler.py")
REQUIREMENTS = ("numpy>=1.26", "boto3>=1.34")
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
TRUST_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}


@dataclass(frozen=True)
class AwsResource:
    """One resource the deployment creates (what ``--dry-run`` prints)."""

    kind: str
    name: str
    detail: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        extra = ", ".join(f"{k}={v}" for k, v in self.detail.items())
        return f"{self.kind:<22} {self.name}" + (f"  ({extra})" if extra else "")


def role_policy(bucket: str, prefix: str, region: str, account: str) -> dict[str, Any]:
    """Least privilege: write the functions' own logs; read and write objects under the prefix."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "Logs",
                "Effect": "Allow",
                "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": [
                    f"arn:aws:logs:{region}:{account}:log-group:/aws/lambda/{prefix}-*",
                    f"arn:aws:logs:{region}:{account}:log-group:/aws/lambda/{prefix}-*:*",
                ],
            },
            {
                "Sid": "PlanObjects",
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:PutObject"],
                "Resource": f"arn:aws:s3:::{bucket}/{prefix}/*",
            },
        ],
    }


def write_build_context(out_dir: str | Path) -> Path:
    """Dockerfile + handler package + requirements for the expert-function container image."""
    out = Path(out_dir)
    pkg = out / "lambda_runtime"
    pkg.mkdir(parents=True, exist_ok=True)
    here = Path(__file__).parent
    for name in HANDLER_FILES:
        shutil.copy2(here / name, pkg / name)
    (out / "requirements.txt").write_text("\n".join(REQUIREMENTS) + "\n")
    (out / "Dockerfile").write_text(
        f"FROM {BASE_IMAGE}\n"
        "COPY requirements.txt ${LAMBDA_TASK_ROOT}/\n"
        f"RUN pip install --no-cache-dir torch --index-url {TORCH_CPU_INDEX} \\\n"
        "    && pip install --no-cache-dir -r ${LAMBDA_TASK_ROOT}/requirements.txt\n"
        "COPY lambda_runtime/ ${LAMBDA_TASK_ROOT}/lambda_runtime/\n"
        'CMD ["lambda_runtime.handler.handler"]\n'
    )
    return out


def docker_available() -> str | None:
    """The docker CLI when its daemon answers, else None."""
    docker = shutil.which("docker")
    if docker is None:
        return None
    try:
        ok = subprocess.run([docker, "info"], capture_output=True, timeout=15).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    return docker if ok else None


def build_image(context: Path, image_uri: str, platform: str = "linux/amd64") -> bool:
    """``docker build`` + ``docker push``; False (with a log line) when Docker is absent."""
    docker = docker_available()
    if docker is None:
        log.warning(
            "docker not found (or its daemon is not running): build context written to %s; build and push it yourself:\n"
            "  docker build --platform %s -t %s %s && docker push %s",
            context,
            platform,
            image_uri,
            context,
            image_uri,
        )
        return False
    subprocess.run(
        [docker, "build", "--platform", platform, "-t", image_uri, str(context)], check=True
    )
    subprocess.run([docker, "push", image_uri], check=True)
    return True


class AwsBackend:
    """boto3 clients for one region (a ``boto3.Session`` may be given, e.g. a profile)."""

    def __init__(
        self, region: str = "us-east-1", session: Any = None, prefix: str = "moeopt"
    ) -> None:
        import boto3

        self.region = region
        self.session = session or boto3.Session(region_name=region)
        self.prefix = prefix
        self.tags = {"moeopt:prefix": prefix, "moeopt:managed-by": "lambda_runtime.aws"}

    def client(self, service: str, **kwargs: Any) -> Any:
        return self.session.client(service, region_name=self.region, **kwargs)

    def lambda_client(self) -> Any:
        from botocore.config import Config

        return self.client(
            "lambda", config=Config(read_timeout=960, retries={"total_max_attempts": 1})
        )

    def s3_client(self) -> Any:
        return self.client("s3")

    def account(self) -> str:
        return self.client("sts").get_caller_identity()["Account"]

    # ---- what would be created ----------------------------------------------------------------
    def resources(
        self, plan: Any, layers: int, experts: int, bucket: str, account: str = "<account>"
    ) -> list[AwsResource]:
        spec = parse_plan(plan, layers, experts)
        repo = f"{self.prefix}-experts"
        out = [
            AwsResource(
                "s3:bucket", bucket, {"objects": f"{self.prefix}/weights/, {self.prefix}/requests/"}
            ),
            AwsResource(
                "ecr:repository",
                repo,
                {"image": f"{account}.dkr.ecr.{self.region}.amazonaws.com/{repo}"},
            ),
            AwsResource(
                "iam:role",
                f"{self.prefix}-expert-role",
                {
                    "policy": f"logs on /aws/lambda/{self.prefix}-*, s3 Get/Put on {bucket}/{self.prefix}/*"
                },
            ),
        ]
        for layer in spec:
            for f in layer.functions:
                out.append(
                    AwsResource(
                        "lambda:function",
                        function_name(self.prefix, f.layer, f.index),
                        {
                            "experts": list(f.experts),
                            "memory_mb": f.memory_mb,
                            "replicas": f.replicas,
                            "architecture": f.architecture,
                            "method": layer.method,
                        },
                    )
                )
        return out

    def dry_run(
        self, plan: Any, layers: int, experts: int, bucket: str, tokens: int, requests: int = 1000
    ) -> dict[str, Any]:
        """Every resource and the predicted cost of ``requests`` requests (plan's prediction + fees)."""
        data = plan_dict(plan)
        spec = parse_plan(data, layers, experts)
        try:
            from cost_models.constants import DEFAULT_CONSTANTS as c

            request_fee, put, get = c.lambda_request_usd, c.storage_put_usd, c.storage_get_usd
        except ImportError:
            request_fee, put, get = 0.0000002, 0.000005, 0.0000004
        invokes = puts = gets = 0
        for layer in spec:
            per_fn = tokens / experts  # uniform routing estimate, top-1 share per expert
            for f in layer.functions:
                invokes += f.replicas
                r = math.ceil(per_fn * len(f.experts) / f.replicas)
                objs = (
                    math.ceil(r / layer.pipeline_degree)
                    if layer.method == "pipelined_storage"
                    else 1
                )
                if layer.method != "direct":
                    puts += (
                        2 * objs * f.replicas
                    )  # inputs by the coordinator, outputs by the function
                    gets += 2 * objs * f.replicas
        predicted = (data.get("predicted") or {}).get("cost_usd")
        fees = invokes * request_fee + puts * put + gets * get
        return {
            "resources": [r.__dict__ for r in self.resources(data, layers, experts, bucket)],
            "requests": requests,
            "predicted_compute_usd": None if predicted is None else predicted * requests,
            "request_and_storage_fees_usd": fees * requests,
            "predicted_total_usd": None if predicted is None else (predicted + fees) * requests,
            "per_request": {"invocations": invokes, "s3_puts": puts, "s3_gets": gets},
        }

    # ---- create ---------------------------------------------------------------------------------
    def ensure_bucket(self, bucket: str) -> None:
        s3 = self.s3_client()
        existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
        if bucket not in existing:
            kwargs: dict[str, Any] = {"Bucket": bucket}
            if self.region != "us-east-1":
                kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
            s3.create_bucket(**kwargs)
        s3.put_bucket_tagging(
            Bucket=bucket,
            Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in self.tags.items()]},
        )
        s3.put_public_access_block(
            Bucket=bucket,
            PublicAccessBlockConfiguration={
                "BlockPublicAcls": True,
                "IgnorePublicAcls": True,
                "BlockPublicPolicy": True,
                "RestrictPublicBuckets": True,
            },
        )

    def ensure_repository(self) -> str:
        ecr = self.client("ecr")
        name = f"{self.prefix}-experts"
        try:
            repo = ecr.create_repository(
                repositoryName=name,
                tags=[{"Key": k, "Value": v} for k, v in self.tags.items()],
                imageScanningConfiguration={"scanOnPush": True},
            )["repository"]
        except ecr.exceptions.RepositoryAlreadyExistsException:
            repo = ecr.describe_repositories(repositoryNames=[name])["repositories"][0]
        return repo["repositoryUri"]

    def ensure_role(self, bucket: str) -> str:
        iam = self.client("iam")
        name = f"{self.prefix}-expert-role"
        try:
            arn = iam.create_role(
                RoleName=name,
                AssumeRolePolicyDocument=json.dumps(TRUST_POLICY),
                Tags=[{"Key": k, "Value": v} for k, v in self.tags.items()],
                Description="moeopt expert functions: own logs, one bucket prefix",
            )["Role"]["Arn"]
        except iam.exceptions.EntityAlreadyExistsException:
            arn = iam.get_role(RoleName=name)["Role"]["Arn"]
        account = arn.split(":")[4]
        iam.put_role_policy(
            RoleName=name,
            PolicyName=f"{self.prefix}-least-privilege",
            PolicyDocument=json.dumps(role_policy(bucket, self.prefix, self.region, account)),
        )
        return arn

    def provision(self, bucket: str, context_dir: str | Path, build: bool = True) -> dict[str, Any]:
        """Bucket, repository, role and build context (+ image when Docker is present)."""
        self.ensure_bucket(bucket)
        repo_uri = self.ensure_repository()
        role_arn = self.ensure_role(bucket)
        context = write_build_context(context_dir)
        image_uri = f"{repo_uri}:latest"
        built = build_image(context, image_uri) if build else False
        return {
            "bucket": bucket,
            "repository_uri": repo_uri,
            "image_uri": image_uri,
            "role_arn": role_arn,
            "context": str(context),
            "image_built": built,
        }

    def deploy(
        self,
        plan: Any,
        export: MoEExport,
        bucket: str,
        image_uri: str,
        role_arn: str,
        timeout_s: int = 300,
    ) -> Deployment:
        return deploy_plan(
            plan,
            export,
            self.lambda_client(),
            self.s3_client(),
            bucket,
            {"PackageType": "Image", "Code": {"ImageUri": image_uri}},
            prefix=self.prefix,
            role=role_arn,
            timeout_s=timeout_s,
            tags=self.tags,
            create_bucket=False,
        )

    # ---- tear down --------------------------------------------------------------------------------
    def teardown(
        self,
        deployment: Deployment | None = None,
        bucket: str | None = None,
        delete_bucket: bool = False,
    ) -> None:
        """Functions, objects under the prefix, role and repository; the bucket only if asked."""
        s3 = self.s3_client()
        lam = self.lambda_client()
        if deployment is not None:
            teardown(deployment, lam, s3)
        for page in lam.get_paginator("list_functions").paginate():
            for f in page["Functions"]:  # leftovers of this prefix (e.g. an interrupted run)
                if f["FunctionName"].startswith(f"{self.prefix}-l"):
                    lam.delete_function(FunctionName=f["FunctionName"])
        if bucket and not delete_bucket:
            from lambda_runtime.deploy import delete_prefix

            delete_prefix(s3, bucket, f"{self.prefix}/")
        iam = self.client("iam")
        role = f"{self.prefix}-expert-role"
        try:
            iam.delete_role_policy(RoleName=role, PolicyName=f"{self.prefix}-least-privilege")
            iam.delete_role(RoleName=role)
        except iam.exceptions.NoSuchEntityException:
            pass
        ecr = self.client("ecr")
        with contextlib.suppress(ecr.exceptions.RepositoryNotFoundException):
            ecr.delete_repository(repositoryName=f"{self.prefix}-experts", force=True)
        if bucket and delete_bucket:
            from lambda_runtime.deploy import delete_prefix

            delete_prefix(s3, bucket, "")
            s3.delete_bucket(Bucket=bucket)
