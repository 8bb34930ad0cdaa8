import json
from pathlib import Path

import numpy as np
import pytest

from rarec._json import json_default


def test_paths_and_numpy_scalars_are_written_and_other_objects_refused():
    config = {"checkpoint_dir": Path("runs/fit"), "n": np.int64(3), "x": np.float32(0.5)}
    assert json.loads(json.dumps(config, default=json_default)) == {"checkpoint_dir": "runs/fit", "n": 3, "x": 0.5}
    with pytest.raises(TypeError, match="object is not JSON serialisable"):
        json.dumps({"bad": object()}, default=json_default)
