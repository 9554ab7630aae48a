"""Actions ask first: a note, a job status or a parts request is read back and done only after a yes.

Pure: what to read back for an intent, and whether an utterance answers the question ("yes", "yep, do it",
"no", "cancel that"). The assistant keeps at most one pending action (in the device store, so it survives a
restart) and drops it after ``PENDING_TTL_S`` or when a new action replaces it. Nothing is queued on a guess.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from linecrew.agent.commands import match

PENDING_TTL_S = 120.0
ACTION_INTENTS = ("log_note", "job_status", "parts_request")
_YES = re.compile(r"^(yes|yeah|yep|yup|affirmative|correct|confirm(ed)?|do it|go ahead|ok(ay)?|sure|"
                  r"that'?s right|right)\b")
_NO = re.compile(r"^(no|nope|nah|negative|cancel|stop|don'?t|wrong|never ?mind|scratch that)\b")


@dataclass(frozen=True)
class PendingAction:
    intent: str
    payload: dict[str, Any]
    readback: str
    created: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def expired(self, now: float) -> bool:
        return now - self.created > PENDING_TTL_S


def read_back(intent: str, slots: dict[str, Any], text: str, job_id: str | None, now: float) -> PendingAction:
    """What the device will do, in words the technician can check, and the payload it will queue."""
    job = f"job {job_id}" if job_id else "no job set"
    if intent == "log_note":
        note = str(slots.get("text") or text)
        return PendingAction(intent, {"text": note, "job_id": job_id}, f'Note for {job}: "{note}". Save it?', now)
    if intent == "job_status":
        status, reason = slots["status"], slots.get("reason")
        words = {"on_site": "on site", "done": "done", "blocked": "blocked"}.get(status, status)
        why = f" because {reason}" if reason else ""
        if not job_id:  # a status for no job changes nothing at dispatch: what was said goes as a note instead
            note = text or f"{words}{why}"
            return PendingAction("log_note", {"text": note, "job_id": None},
                                 f'No job is set on this device, so none can be marked {words}. Save "{note}" as a '
                                 f"note for dispatch?", now)
        return PendingAction(intent, {"job_id": job_id, "status": status, "reason": reason},
                             f"Mark {job} as {words}{why} and tell dispatch?", now)
    items = list(slots.get("items") or [])
    listing = ", ".join(f"{i['quantity']} x {i['part']}" for i in items)
    return PendingAction(intent, {"job_id": job_id, "items": items}, f"Request {listing} for {job}?", now)


# the whole utterance a yes or a no and nothing else ("yes", "cancel that", "go ahead"): with nothing read back, it
# answers nothing (it was heard as a question, or saved as a note "no")
_BARE = re.compile(r"^(?:(?P<yes>yes|yeah|yep|yup|do it|go ahead|confirm(?:ed)?)|"
                   r"(?P<no>no|nope|nah|cancel(?: (?:that|it))?|never ?mind|scratch that))(?: please| thanks)?$")


def bare_answer(text: str) -> bool | None:
    """True for an utterance that is only a yes, False for only a no, None otherwise."""
    m = _BARE.match(" ".join(re.sub(r"[^a-z' ]", " ", text.lower()).split()))
    return None if m is None else m["yes"] is not None


def answer_to_prompt(text: str) -> bool | None:
    """True for a yes, False for a no, None for anything else (a new request; the action stays pending)."""
    said = match(text, {"no": _NO, "yes": _YES}, max_words=5)  # a no first: "no, don't do it"
    return None if said is None else said == "yes"
