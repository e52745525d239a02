"""Airflow DAG: split, N shard runs (a KubernetesPodOperator per shard, mapped), merge.
Each task is one billrun command; retries re-run a task, which is idempotent (a shard run
replaces its own output with --force; the merge publishes its manifest last)."""
from datetime import datetime

from airflow import DAG
from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

N = 8
IMAGE = "registry.example.com/billrun:0.1.0"
B = "s3://billing"

with DAG("billrun_nightly", schedule="30 0 * * *", start_date=datetime(2026, 11, 1), catchup=False) as dag:
    night, prev = "{{ ds }}", "{{ macros.ds_add(ds, -1) }}"
    split = KubernetesPodOperator(
        task_id="split", image=IMAGE, name="billrun-split",
        arguments=["shard", "--shard-count", str(N), "--out", f"{B}/split/{night}", "--state", f"{B}/runs/{prev}",
                   "--usage", f"{B}/in/{night}/usage", "--credits", f"{B}/in/{night}/credits",
                   "--events", f"{B}/in/{night}/events"],
    )
    shards = KubernetesPodOperator.partial(task_id="shard", image=IMAGE, name="billrun-shard", retries=2).expand(
        arguments=[["run", "--job", f"{B}/jobs/nightly.toml", "--shard", f"{i}/{N}", "--state", f"{B}/runs/{prev}",
                    "--usage", f"{B}/split/{night}/shard={i}/usage", "--credits", f"{B}/split/{night}/shard={i}/credits",
                    "--events", f"{B}/split/{night}/shard={i}/events", "--output", f"{B}/shards/{night}/{i}", "--force"]
                   for i in range(N)]
    )
    merge = KubernetesPodOperator(
        task_id="merge", image=IMAGE, name="billrun-merge",
        arguments=["merge", "--out", f"{B}/runs/{night}"] + [f"{B}/shards/{night}/{i}" for i in range(N)],
    )
    split >> shards >> merge
