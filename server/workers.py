"""Deferred-task workers: receive tasks through an MQTT 5 shared subscription, return results.

Every worker process subscribes ``$share/linecrew-workers/linecrew/v1/tasks/run/+``; the broker hands
each task to one of them, so adding processes on more machines scales the work out. Workers hold no
state: the task carries its context, the result goes back on ``linecrew/v1/tasks/results``, and the
server (which re-dispatches tasks whose worker went quiet) ignores a repeated result.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from linecrew.shared.engine import Receiver
from linecrew.shared.errors import ProtocolError
from linecrew.shared.llm import LlmConfig, LocalLLM, chat_prompt
from linecrew.shared.mqtt import BrokerAddress, MqttLink
from linecrew.shared.protocol import TaskDone, TaskKind, TaskRun, Topics, decode, encode, internal_id, make_envelope

log = logging.getLogger(__name__)

Handler = Callable[[TaskRun], str]


_SUMMARY_SYSTEM = ("You summarise field job logs for a utility dispatcher in three short sentences: what was found, "
                   "what was done, what is still open.")


def summarize_job_log(llm: LocalLLM) -> Handler:
    def run(task: TaskRun) -> str:
        notes = [str(n) for n in task.context.get("notes", [])]
        if not notes:
            return f"No notes were logged for job {task.job_id or '(none)'} yet."
        joined = "\n".join(f"- {n}" for n in notes[-60:])
        prompt = chat_prompt(f"Job {task.job_id or ''} notes:\n{joined}", system=_SUMMARY_SYSTEM)
        summary = llm.complete(prompt, max_tokens=120).text.strip()
        return f"Summary of {len(notes)} note(s) for job {task.job_id or '(none)'}: {summary}"

    return run


class TaskWorker:
    def __init__(self, address: BrokerAddress, *, worker_id: str, handlers: dict[str, Handler],
                 share_group: str = "linecrew-workers") -> None:
        self.worker_id = worker_id
        self.handlers = handlers
        self.done = 0
        self.receiver = Receiver(self._handle, max_batch=1, name=f"worker-{worker_id}")
        self.link = MqttLink(client_id=internal_id(worker_id), address=address,
                             subscriptions=Topics.worker_subscriptions(share_group), on_message=self.receiver.put)

    def start(self) -> None:
        self.receiver.start()
        self.link.start()

    def stop(self) -> None:
        self.link.stop()
        self.receiver.stop()

    def _handle(self, items: list[tuple[str, bytes]]) -> None:
        for _topic, raw in items:
            try:
                msg = decode(raw)
            except ProtocolError as e:
                log.warning("worker %s rejected a task: %s", self.worker_id, e.reason)
                continue
            if isinstance(msg.payload, TaskRun):
                self._execute(msg.payload)

    def _execute(self, task: TaskRun) -> None:
        handler = self.handlers.get(task.kind)
        try:
            if handler is None:
                raise KeyError(f"no worker handles tasks of kind {task.kind!r}")
            ok, result = True, handler(task)
        except Exception as e:
            log.warning("task %s (%s) failed: %s", task.task_id, task.kind, e)
            ok, result = False, str(e)[:2000]
        done = TaskDone(task_id=task.task_id, ok=ok, result=result[:16_000], worker=self.worker_id)
        self.link.publish(Topics.task_results(), encode(make_envelope("task_done", done, device_id="server")))
        self.done += 1


def default_handlers(llm_config: LlmConfig | None = None) -> dict[str, Handler]:
    llm = LocalLLM(llm_config)
    return {TaskKind.SUMMARIZE_JOB_LOG: summarize_job_log(llm)}


def task_message(task: dict[str, Any], context: dict[str, Any]) -> bytes:
    run = TaskRun(task_id=task["task_id"], kind=task["kind"], job_id=task["job_id"], args=task["args"],
                  context=context)
    return encode(make_envelope("task_run", run, device_id=task["device_id"]))
