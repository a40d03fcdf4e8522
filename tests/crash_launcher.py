"""``lensops`` with a crash injected: SIGKILL right after a runbook step is checkpointed.

    python tests/crash_launcher.py STEP run     # `lensops run`, killed once STEP is checkpointed done

For the tests of crash and resume (tests/test_runbook_dr_restore.py). The
product carries no test hook: this launcher wraps the runbook executor's step
runner (``runbooks.executor._Driver._run_step``: run a step, checkpoint its
answer by a conditional put) and then hands over to the CLI's ``main``. The
process dies the way a crash does, between that checkpoint and the next step.
If the executor is restructured so that the wrapper no longer fits, the
launcher fails at start (AttributeError) and so does the test that uses it.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from controller.cli import main
from runbooks import executor
from runbooks.record import DONE


def crash_after(step: str) -> None:
    """SIGKILL this process once ``step`` of any run has been checkpointed as done."""
    run_step = executor._Driver._run_step

    def run_step_then_crash(self: Any, record: Any, version: int, index: int) -> Any:
        answer = run_step(self, record, version, index)
        state = record.steps[index]
        # A lost race returns a Progress without the checkpoint: no crash then.
        if state.name == step and state.state == DONE and not isinstance(answer, executor.Progress):
            print(f"crash_launcher: SIGKILL after step {step} was checkpointed", file=sys.stderr, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        return answer

    executor._Driver._run_step = run_step_then_crash  # type: ignore[method-assign]


if __name__ == "__main__":
    crash_after(sys.argv[1])
    sys.exit(main(sys.argv[2:]))
