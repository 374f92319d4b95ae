"""AWS backend control plane against moto's in-process mock (never a real account)."""

from __future__ import annotations

import json
import logging

import boto3
import pytest
from moto import mock_aws

from lambda_runtime.aws import AwsBackend, role_policy, write_build_context
from lambda_runtime.model import SeededMoE
from tests.runtime.conftest import fn, make_plan, one_layer

PLAN = make_plan(
    [
        one_layer("direct", [fn([0, 1]), fn([2], replicas=2), fn([3])]),
        one_layer("pipelined_storage", [fn([0, 1, 2, 3], replicas=3, memory_mb=3008)], beta=64),
    ]
)
PLAN["predicted"] = {"cost_usd": 0.001, "latency_s": 2.0}


@pytest.fixture()
def aws(monkeypatch):
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    with mock_aws():
        yield AwsBackend(
            region="us-east-1", session=boto3.Session(region_name="us-east-1"), prefix="mt"
        )


def test_dry_run_lists_every_resource_and_cost(aws):
    out = aws.dry_run(PLAN, layers=2, experts=4, bucket="mt-bucket", tokens=1024)
    kinds = [r["kind"] for r in out["resources"]]
    assert kinds.count("lambda:function") == 4
    assert {"s3:bucket", "ecr:repository", "iam:role"} <= set(kinds)
    assert out["per_request"]["invocations"] == 1 + 2 + 1 + 3
    # pipelined layer: 1024 tokens over 3 replicas, beta 64 -> ceil(342/64) = 6 minibatches each
    assert out["per_request"]["s3_puts"] == 2 * 6 * 3
    assert out["predicted_compute_usd"] == pytest.approx(1.0)
    assert out["predicted_total_usd"] > out["predicted_compute_usd"]
    # nothing was created
    assert aws.client("lambda").list_functions()["Functions"] == []


def test_provision_deploy_and_teardown(aws, tmp_path, caplog, capsys, monkeypatch):
    monkeypatch.setattr(
        "lambda_runtime.aws.docker_available", lambda: None
    )  # never build/push in tests
    secret = "moeopt-test-secret-5f2c9a"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    caplog.set_level(logging.DEBUG)  # every logger, botocore's included
    assert aws.session.get_credentials().secret_key == secret  # the calls below sign with it
    moe = SeededMoE(layers=2, experts=4, hidden=8, ffn=16, top_k=1)
    info = aws.provision("mt-bucket", tmp_path / "ctx")
    assert info["image_built"] is False  # no docker here: context written, build skipped
    assert "docker not found" in caplog.text
    assert (
        (tmp_path / "ctx" / "Dockerfile")
        .read_text()
        .startswith("FROM public.ecr.aws/lambda/python:3.11")
    )
    d = aws.deploy(PLAN, moe.export(), "mt-bucket", info["image_uri"], info["role_arn"])
    lam = aws.client("lambda")
    names = sorted(f["FunctionName"] for f in lam.list_functions()["Functions"])
    assert names == sorted(f.name for f in d.functions)
    cfg = lam.get_function(FunctionName=d.layers[1].functions[0].name)
    assert cfg["Configuration"]["MemorySize"] == 3008
    assert cfg["Configuration"]["PackageType"] == "Image"
    assert cfg["Tags"]["moeopt:prefix"] == "mt"
    iam = aws.client("iam")
    policy = iam.get_role_policy(RoleName="mt-expert-role", PolicyName="mt-least-privilege")[
        "PolicyDocument"
    ]
    resources = json.dumps(policy)
    assert (
        "arn:aws:s3:::mt-bucket/mt/*" in resources
        and "s3:*" not in resources
        and '"*"' not in resources
    )
    s3 = aws.s3_client()
    tags = {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket="mt-bucket")["TagSet"]}
    assert tags["moeopt:prefix"] == "mt"
    assert s3.list_objects_v2(Bucket="mt-bucket", Prefix="mt/weights/")["KeyCount"] == 8
    aws.teardown(d, bucket="mt-bucket", delete_bucket=True)
    assert lam.list_functions()["Functions"] == []
    assert not [r for r in iam.list_roles()["Roles"] if r["RoleName"] == "mt-expert-role"]
    assert aws.client("ecr").describe_repositories()["repositories"] == []
    out = capsys.readouterr()
    assert secret not in caplog.text + out.out + out.err  # no credential is ever logged


def test_role_policy_is_scoped():
    p = role_policy("b", "pre", "eu-west-1", "123")
    actions = {a for s in p["Statement"] for a in s["Action"]}
    assert actions == {
        "logs:CreateLogGroup",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "s3:GetObject",
        "s3:PutObject",
    }


def test_build_context_has_handler_and_no_credentials(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "very-secret-value")
    ctx = write_build_context(tmp_path)
    assert (ctx / "lambda_runtime" / "handler.py").exists()
    for path in ctx.rglob("*"):
        if path.is_file():
            assert "very-secret-value" not in path.read_text(errors="replace")


def test_cli_provision_then_teardown_removes_leftovers(aws, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from lambda_runtime.cli import runtime

    monkeypatch.setattr("lambda_runtime.aws.docker_available", lambda: None)
    result = CliRunner().invoke(
        runtime,
        [
            "aws-provision",
            "--bucket",
            "cli-bucket",
            "--prefix",
            "cp",
            "--context",
            str(tmp_path / "ctx"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "next: moeopt run PLAN.json --backend aws" in result.output
    info = json.loads(result.output[: result.output.index("next:")])
    lam = aws.client("lambda")
    lam.create_function(
        FunctionName="cp-l0-f0",
        Role=info["role_arn"],
        PackageType="Image",
        Code={"ImageUri": info["image_uri"]},
    )  # an interrupted run's function
    lam.create_function(
        FunctionName="other-fn",
        Role=info["role_arn"],
        PackageType="Image",
        Code={"ImageUri": info["image_uri"]},
    )
    result = CliRunner().invoke(
        runtime, ["aws-teardown", "--bucket", "cli-bucket", "--prefix", "cp"]
    )
    assert result.exit_code == 0, result.output
    assert [f["FunctionName"] for f in lam.list_functions()["Functions"]] == ["other-fn"]
    assert aws.client("ecr").describe_repositories()["repositories"] == []
