"""``moeopt runtime serve`` and the AWS account commands (provision, teardown)."""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading

import click

from lambda_runtime.commands.common import (
    RuntimeFailure,
    local_backend,
    network_options,
    quiet_cli_threads,
)


@click.group("runtime")
def runtime() -> None:
    """The Lambda runtime: local backend (Lambda API + S3 on 127.0.0.1)."""


@runtime.command("serve")
@click.option(
    "--concurrency",
    type=click.IntRange(1, 10_000),
    default=64,
    show_default=True,
    help="Account concurrency limit (429 beyond it).",
)
@click.option("--no-cpu-limits", is_flag=True, help="Do not apply cgroup vCPU quotas.")
@click.option("--credentials-file", type=click.Path(dir_okay=False), default=None,
              help="Where to write the client's credentials (0600, profile moeopt-local; "
              "default: in the backend's temp folder). Removed when the server stops.")
@click.option("--event-time-scale", type=click.FloatRange(min=0, min_open=True), default=1 / 60,
              show_default="1/60",
              help="Lambda's schedule of Event retries (1 and 2 minutes) times this factor.")
@network_options
def serve(concurrency: int, no_cpu_limits: bool, credentials_file: str | None,
          event_time_scale: float, no_network: bool, host_vcpus: float | None) -> None:
    """Start the local backend and print its endpoints; runs until Ctrl-C."""
    from lambda_runtime.local.credentials import PROFILE

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    quiet_cli_threads()
    with local_backend(no_network, host_vcpus, concurrency_limit=concurrency,
                       cpu_limits=not no_cpu_limits, credentials_file=credentials_file,
                       event_time_scale=event_time_scale) as backend:
        status = backend.status()
        click.echo(f"Lambda API: {status['lambda_endpoint']}")
        click.echo(f"S3:         {status['s3_endpoint']}")
        cpu = status["cpu_limit"]
        click.echo(
            f"vCPU share: {'enforced by ' + cpu['mechanism'] if cpu['enforced'] else 'NOT enforced'}"
            f" ({cpu['detail']})"
        )
        net = status.get("network")
        click.echo(
            "network:    "
            + (f"Lambda's model (S3 {net['storage_bandwidth_bytes_per_s'] / 1e6:.0f} MB/s + "
               f"{net['storage_delay_s'] * 1000:.0f} ms per request, payloads "
               f"{net['function_bandwidth_bytes_per_s'] / 1e6:.0f} MB/s, start "
               f"{net['warm_start_s'] * 1000:.0f} ms)" if net else "loopback (no model)")
        )
        click.echo(f"host vCPUs: {status['host']['vcpus']:g} (invocations beyond them wait)")
        click.echo(f"credentials: {backend.credentials_file} (0600; profile {PROFILE}; every "
                   "request must be signed with them)")
        click.echo(f"awscli:     {backend.awscli_recipe()}")
        click.echo(
            f"boto3:      AWS_SHARED_CREDENTIALS_FILE={backend.credentials_file}, then "
            f"boto3.Session(profile_name='{PROFILE}').client('lambda', "
            f"endpoint_url='{status['lambda_endpoint']}', region_name='us-east-1')", nl=True
        )
        sys.stdout.flush()
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        failure = None
        try:
            while not stop.wait(1.0) and failure is None:
                failure = backend.failure()
        except KeyboardInterrupt:
            pass
        click.echo("stopping")
    if failure is not None:
        raise RuntimeFailure(f"runtime serve: {failure}; stopped the rest")


@runtime.command("aws-provision")
@click.option("--region", default="us-east-1", show_default=True)
@click.option(
    "--bucket", required=True, help="S3 bucket for weights and intermediates (created if absent)."
)
@click.option("--prefix", default="moeopt", show_default=True)
@click.option(
    "--context",
    "context_dir",
    type=click.Path(file_okay=False),
    default="moeopt-image",
    show_default=True,
    help="Where to write the container image build context.",
)
def aws_provision(region: str, bucket: str, prefix: str, context_dir: str) -> None:
    """Create the bucket, ECR repository and least-privilege role; build the image if Docker runs."""
    from lambda_runtime.aws import AwsBackend

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    info = AwsBackend(region=region, prefix=prefix).provision(bucket, context_dir)
    click.echo(json.dumps(info, indent=2))
    click.echo(
        f"next: moeopt run PLAN.json --backend aws --region {region} --bucket {bucket} --prefix {prefix} "
        f"--image-uri {info['image_uri']} --role-arn {info['role_arn']}"
    )


@runtime.command("aws-teardown")
@click.option("--region", default="us-east-1", show_default=True)
@click.option("--bucket", default=None)
@click.option("--prefix", default="moeopt", show_default=True)
@click.option("--delete-bucket", is_flag=True, help="Also empty and delete the bucket.")
def aws_teardown(region: str, bucket: str | None, prefix: str, delete_bucket: bool) -> None:
    """Delete the prefix's functions, role and repository (and the bucket if asked)."""
    from lambda_runtime.aws import AwsBackend

    AwsBackend(region=region, prefix=prefix).teardown(bucket=bucket, delete_bucket=delete_bucket)
    click.echo(f"torn down prefix {prefix!r} in {region}")


