"""What this controller process keeps about each live request besides its status: one object per request.

The status (status.py) is what survives a restart; this is what does not need to: the DAG's pace, whether a
POST of this process may have landed, and the metrics bookkeeping. `Runtimes` creates
each object on a request's first step and forgets it in one place (deletion, or the end of a request).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from obstop.controller.pacing import View
from obstop.controller.resource import Phase


@dataclass
class RequestRuntime:
    uid: str
    namespace: str
    name: str
    # True unless this process knows that no stop of this request can be on the agent: it recorded the
    # submission and has not POSTed since, or its POST certainly did not reach the agent (an answer from
    # obshell itself, or no connection). Only a stop that may have landed is looked for on the agent before a
    # POST: looking otherwise could adopt a concurrent request's DAG. A new process knows nothing: True.
    may_have_landed: bool = True
    learned: set[str] = field(default_factory=set)  # what of its DAG is already in pacing.NodeTimes (keys)
    phase: Phase | None = None  # as counted in the obstop_requests gauge
    polls: int = 0  # DAG polls so far (the obstop_polls_per_request histogram)
    # The view of the DAG the last step's next poll was aimed from (pacing.py rule 5 aims again from it); None
    # when that step's next one is not an aimed poll.
    paced: View | None = None


class Runtimes:
    """The runtime objects of the requests this process handles, by uid."""

    def __init__(self) -> None:
        self._by_uid: dict[str, RequestRuntime] = {}

    def get(self, uid: str, namespace: str, name: str) -> RequestRuntime:
        runtime = self._by_uid.get(uid)
        if runtime is None:
            runtime = self._by_uid[uid] = RequestRuntime(uid, namespace, name)
        return runtime

    def find(self, uid: str) -> RequestRuntime | None:
        return self._by_uid.get(uid)

    def forget(self, uid: str) -> RequestRuntime | None:
        return self._by_uid.pop(uid, None)

    def __iter__(self) -> Iterator[RequestRuntime]:
        return iter(list(self._by_uid.values()))

    def __len__(self) -> int:
        return len(self._by_uid)
