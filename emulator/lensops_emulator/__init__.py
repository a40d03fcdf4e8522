"""The embedded AWS used by lensops's tests and ``lensops demo``: moto in server mode, plus what moto lacks.

Test tooling, not part of lensops: the ``lensops-emulator`` distribution of
this repository's ``emulator/`` folder (``pip install ./emulator``).

    emulator = start()          # serves http://127.0.0.1:<a free port>
    cloudwatch = boto3.client("cloudwatch", endpoint_url=emulator.url, region_name="us-east-1")
    emulator.reset()            # before each test
    emulator.set_quotas(Quotas.aws(scale=10, latency_ms=30))  # AWS's API rates (x10), 30 ms a call
    estate.seed(emulator.url)   # lensops_emulator.estate: the EconLens estate's pre-existing resources
    emulator.stop()

See emulator/README.md for the operations added to moto and their limits.
"""

from .faults import FaultPlan, FaultRule
from .quotas import AWS_RATES, Quotas
from .server import Emulator, start

__all__ = ["AWS_RATES", "Emulator", "FaultPlan", "FaultRule", "Quotas", "start"]
