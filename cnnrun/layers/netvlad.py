"""NetVLAD pooling (chapter 5.22; Arandjelovic et al. 2016), with GhostVLAD's ghost clusters.

V(j, k) = sum_i a_k(x_i) (x_i(j) - c_k(j)), with the soft assignment a_k = softmax over K+G clusters of a 1x1
convolution; the G ghost clusters absorb assignments but their residuals are dropped. Each cluster's residual is
L2-normalised (intra-normalisation), then the flattened K*D vector is L2-normalised.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cnnrun import checks as A
from cnnrun.layers.registry import register


class NetVLAD(nn.Module):
    def __init__(self, dim: int, clusters: int, ghost_clusters: int = 0, alpha: float = 100.0,
                 normalize_input: bool = True, init: str = "random"):
        super().__init__()
        self.dim, self.clusters, self.ghost_clusters = dim, clusters, ghost_clusters
        self.alpha, self.normalize_input, self.init = alpha, normalize_input, init
        self.assign = nn.Conv1d(dim, clusters + ghost_clusters, kernel_size=1, bias=True)
        self.centroids = nn.Parameter(torch.rand(clusters + ghost_clusters, dim))
        self._init_from_centroids()

    def _init_from_centroids(self) -> None:
        """The paper's initialisation: w_k = 2 alpha c_k, b_k = -alpha ||c_k||^2."""
        with torch.no_grad():
            c = self.centroids
            self.assign.weight.copy_((2.0 * self.alpha * c).unsqueeze(-1))
            self.assign.bias.copy_(-self.alpha * c.norm(dim=1) ** 2)

    @torch.no_grad()
    def init_from_descriptors(self, descriptors: torch.Tensor, seed: int = 0) -> None:
        """k-means over local descriptors (N, D, *spatial) of training data sets the centres (``init: kmeans``)."""
        from sklearn.cluster import KMeans

        x = descriptors.flatten(2).transpose(1, 2).reshape(-1, self.dim)
        if self.normalize_input:
            x = F.normalize(x, dim=1)
        k = self.clusters + self.ghost_clusters
        km = KMeans(n_clusters=k, n_init=3, random_state=seed).fit(x.double().cpu().numpy())
        self.centroids.copy_(torch.as_tensor(km.cluster_centers_, dtype=self.centroids.dtype))
        self._init_from_centroids()

    def forward(self, x):
        x = x.flatten(2)  # (N, D, P) over the P spatial positions
        if self.normalize_input:
            x = F.normalize(x, dim=1)
        soft = F.softmax(self.assign(x), dim=1)[:, :self.clusters]  # (N, K, P), ghosts dropped after softmax
        centroids = self.centroids[:self.clusters]
        # sum_i a_ik x_i - c_k sum_i a_ik
        vlad = torch.einsum("nkp,ndp->nkd", soft, x) - soft.sum(2).unsqueeze(2) * centroids.unsqueeze(0)
        vlad = F.normalize(vlad, dim=2)  # intra-normalisation
        return F.normalize(vlad.flatten(1), dim=1)

    def extra_repr(self):
        return (f"dim={self.dim}, clusters={self.clusters}, ghost_clusters={self.ghost_clusters}, "
                f"alpha={self.alpha}, init={self.init}")


@register("netvlad", doc="NetVLAD pooling to a unit-norm K*D vector; ghost_clusters gives GhostVLAD; "
                         "init: kmeans sets the centres from training descriptors", section="5.22")
def netvlad(in_shape, *, clusters=16, ghost_clusters=0, alpha=100.0, normalize_input=True, init="random"):
    A.spatial_rank("netvlad", in_shape)
    clusters = A.positive_int("clusters", clusters)
    ghosts = A.positive_int("ghost_clusters", ghost_clusters, minimum=0)
    module = NetVLAD(in_shape[0], clusters, ghosts, A.positive_float("alpha", alpha),
                     A.boolean("normalize_input", normalize_input), A.choice("init", init, ("random", "kmeans")))
    return module, (clusters * in_shape[0],)
