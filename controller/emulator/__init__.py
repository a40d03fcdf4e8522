"""The embedded AWS used by tests and ``lensops demo``: moto in server mode, plus what moto lacks.

    emulator = start()          # serves http://127.0.0.1:<a free port>
    cloudwatch = boto3.client("cloudwatch", endpoint_url=emulator.url, region_name="us-east-1")
    emulator.reset()            # before each test
    emulator.stop()

See README.md in this folder for the operations added to moto and their limits.
"""

from .faults import FaultPlan
from .server import Emulator, start

__all__ = ["Emulator", "FaultPlan", "start"]
