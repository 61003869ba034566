import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """The zoo tests run many small operations: on the CI's two cores, shared with other jobs, two intra-op threads
    stall on each other far more than they gain. A run also sets torch's threads for its job (trainer.threads);
    the rest of the suite gets its own count back."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
