"""A boto3 Glue client stand-in that really runs the job: the Pipes test double for ``engine: glue``.

Every call goes to the emulator's Glue (jobs, job runs) except that ``start_job_run`` also does
what AWS Glue does: it fetches the job's ``ScriptLocation`` from S3 and runs that script with the
job's default arguments plus the run's (Pipes' bootstrap arguments included), here on local
PySpark in a child process. ``get_job_run`` reports the child's state (RUNNING, SUCCEEDED, FAILED
with the output's tail as ErrorMessage); ``batch_stop_job_run`` stops it. The Pipes messages flow
through the emulator's S3 exactly as on AWS.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from pydantic import PrivateAttr

from offload_assets.defs.resources import GlueJobsResource


class LocalSparkGlueClient:
    def __init__(self, real_glue: Any, s3: Any, env: dict[str, str], workdir: Path) -> None:
        self._real, self._s3, self._env, self._workdir = real_glue, s3, env, workdir
        self.runs: dict[str, tuple[subprocess.Popen, Path]] = {}

    def __getattr__(self, name: str) -> Any:  # meta, exceptions, get_job, create_job, update_job ...
        return getattr(self._real, name)

    def start_job_run(self, *, JobName: str, Arguments: dict[str, str] | None = None, **kwargs: Any) -> dict[str, Any]:
        arguments = dict(Arguments or {})
        run_id = self._real.start_job_run(JobName=JobName, Arguments=arguments, **kwargs)["JobRunId"]
        job = self._real.get_job(JobName=JobName)["Job"]
        bucket, key = job["Command"]["ScriptLocation"].removeprefix("s3://").split("/", 1)
        run_dir = self._workdir / run_id
        run_dir.mkdir(parents=True)
        script = run_dir / Path(key).name
        script.write_bytes(self._s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        argv = [sys.executable, str(script), "--JOB_NAME", JobName, "--JOB_ID", run_id, "--JOB_RUN_ID", run_id]
        for name, value in {**job.get("DefaultArguments", {}), **arguments}.items():
            argv += [name, value]
        argv += ["--spark-master", "local[2]"]  # what Glue's own session would be
        env = dict(self._env)
        extra = job.get("DefaultArguments", {}).get("--extra-py-files")
        if extra:  # like Glue: the package zip goes first on the driver's and the executors' path
            zbucket, zkey = extra.removeprefix("s3://").split("/", 1)
            package = run_dir / Path(zkey).name
            package.write_bytes(self._s3.get_object(Bucket=zbucket, Key=zkey)["Body"].read())
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(package), env.get("PYTHONPATH")]))
        log = run_dir / "output.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                argv, env=env, cwd=run_dir, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.runs[run_id] = (proc, log)
        return {"JobRunId": run_id}

    def get_job_run(self, *, JobName: str, RunId: str, **_: Any) -> dict[str, Any]:
        proc, log = self.runs[RunId]
        code = proc.poll()
        state = "RUNNING" if code is None else "SUCCEEDED" if code == 0 else "STOPPED" if code < 0 else "FAILED"
        run = {"Id": RunId, "JobName": JobName, "JobRunState": state}
        if state == "FAILED":
            run["ErrorMessage"] = log.read_text(errors="replace")[-3000:]
        return {"JobRun": run}

    def batch_stop_job_run(self, *, JobName: str, JobRunIds: list[str]) -> dict[str, Any]:
        stopped = []
        for run_id in JobRunIds:
            proc, _ = self.runs[run_id]
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(60)
            stopped.append({"JobName": JobName, "JobRunId": run_id})
        return {"SuccessfulSubmissions": stopped, "Errors": []}


class LocalSparkGlueJobs(GlueJobsResource):
    """The project's Glue-jobs resource, with the stand-in client; messages polled every second."""

    workdir: str
    _client: LocalSparkGlueClient | None = PrivateAttr(default=None)

    def get_client(self) -> Any:
        if self._client is None:
            conn = self.connection()
            env = {
                **os.environ,
                "AWS_ENDPOINT_URL": conn.endpoint_url,
                "AWS_DEFAULT_REGION": conn.region_name or "us-east-1",
                "AWS_ACCESS_KEY_ID": conn.aws_access_key_id,
                "AWS_SECRET_ACCESS_KEY": conn.aws_secret_access_key,
                "PYSPARK_PYTHON": sys.executable,
                "SPARK_LOCAL_IP": "127.0.0.1",
            }
            self._client = LocalSparkGlueClient(conn.client("glue"), conn.client("s3"), env, Path(self.workdir))
        return self._client
