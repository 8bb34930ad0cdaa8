import pytest

from rarec.cf import BPR, BPRConfig, ComiRec, ComiRecConfig, SASRec, SASRecConfig, TrainingConfig
from rarec.data import make_interactions
from rarec.model_selection import leave_last_out


def quick(epochs=15, **kw):
    return TrainingConfig(epochs=epochs, verbose=False, random_state=0, **kw)


# Small, fast settings that still learn the planted structure.
FACTORIES = {
    "sasrec": lambda: SASRec(SASRecConfig(dim=32, n_layers=1, n_heads=2, inner_dim=64, dropout=0.1, max_len=20),
                             quick(epochs=40, batch_size=32, lr=5e-3, patience=8)),
    "comirec": lambda: ComiRec(ComiRecConfig(dim=32, n_interests=3, max_len=20, n_negatives=64),
                               quick(epochs=25, batch_size=128, lr=5e-3, patience=8)),
    "bpr": lambda: BPR(BPRConfig(dim=32), quick(epochs=60, batch_size=256, lr=1e-2, patience=10)),
}


@pytest.fixture(scope="session")
def cf_split():
    log, _ = make_interactions(n_users=150, n_items=60, n_categories=4, random_state=1)
    return leave_last_out(log)


_FITTED = {}


@pytest.fixture(params=sorted(FACTORIES))
def fitted(request, cf_split):
    """Each trainable backbone, fitted once per session on the synthetic split."""
    name = request.param
    if name not in _FITTED:
        _FITTED[name] = FACTORIES[name]().fit(cf_split.train, cf_split.valid)
    return _FITTED[name]
