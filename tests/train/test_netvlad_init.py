"""netvlad ``init: kmeans`` in a real run(): the centres are set at fit start, before the first training step, to a
k-means of the descriptors the layer sees on a training batch (checked with a hand-written Lloyd step)."""
import pytest
import torch
import torch.nn.functional as F

from cnnrun import compose, run
from cnnrun.layers.netvlad import NetVLAD
from tests.conftest import QUIET

TINY = [*QUIET, "model=netvlad", "model.width=0.125", "model.clusters=4", "model.dropout=0.0", "logger=none",
        "trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1", "data.train_fraction=0.2"]


@pytest.fixture(scope="module")
def forwards(tmp_path_factory):
    """Every call of a NetVLAD layer's forward in one short digits run: (training?, input, centres at the call)."""
    calls = []
    original = NetVLAD.forward

    def recording(self, x):
        calls.append((self.training, x.detach().clone(), self.centroids.detach().clone()))
        return original(self, x)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(NetVLAD, "forward", recording)
        run(compose(TINY), output_dir=tmp_path_factory.mktemp("netvlad"))
    return calls


def lloyd_step(x, centres):
    """One k-means (Lloyd) iteration: assign each descriptor to its nearest centre, move each centre to the mean of
    its descriptors (a centre without any stays)."""
    labels = torch.cdist(x, centres).argmin(1)
    moved = centres.clone()
    for k in range(len(centres)):
        if (labels == k).any():
            moved[k] = x[labels == k].mean(0)
    return moved, labels


def fit_start(forwards):
    """(the data-dependent pass: the last forward before training that still sees the centres of the layer's
    construction, those centres, the centres the first training step sees)."""
    first_training = next(i for i, (training, _, _) in enumerate(forwards) if training)
    constructed = forwards[0][2]
    probe = [call for call in forwards[:first_training] if torch.equal(call[2], constructed)][-1]
    return probe, constructed, forwards[first_training][2]


def test_kmeans_sets_the_centres_before_the_first_training_step(forwards):
    (probe_training, descriptors, _), constructed, centres = fit_start(forwards)
    # no optimizer step has run yet, so only the initialisation can have moved the centres
    assert float((centres - constructed).abs().max()) > 0.1
    # after a pass in eval mode over a training batch (data.batch_size), not the summary's single zero image
    assert not probe_training and descriptors.shape[0] == 32


def test_the_centres_are_a_kmeans_of_the_training_descriptors(forwards):
    (_, descriptors, _), constructed, centres = fit_start(forwards)
    centres = centres.double()
    dim = descriptors.shape[1]
    assert centres.shape == (4, dim)
    # the layer normalises each descriptor (normalize_input: true), and so does its k-means
    x = F.normalize(descriptors.flatten(2).transpose(1, 2).reshape(-1, dim).double(), dim=1)
    moved, labels = lloyd_step(x, centres)
    assert len(set(labels.tolist())) == 4  # every centre owns descriptors
    # a fixed point of Lloyd's iteration, up to k-means' stopping tolerance (scikit-learn stops once the centres
    # move by less than tol=1e-4 times the descriptors' variance: ~1e-3 here; random centres move by ~0.5)
    torch.testing.assert_close(moved, centres, atol=5e-3, rtol=0)
    # and a far better clustering than the random centres it replaced
    inertia = torch.cdist(x, centres).min(1).values.square().sum()
    random_inertia = torch.cdist(x, constructed.double()).min(1).values.square().sum()
    assert inertia < 0.5 * random_inertia
