"""RimiRec: refined multi-interest retrieval over a hierarchical item tree.

Reference: H. Pei, Y. Xu, Y. Zhu, Y. Nie, "Modeling Refined Multi-interest in Hierarchical
Structure for Recommendation" (RimiRec). Stage 1: an item tree from hierarchical k-means (built by
:class:`~recbole_rimirec.data.tree_dataset.TreeDataset` from the train split) and a Transformer
that gives P(node | user) over the tree; node selection with early stopping yields a user's
circles and sub-circles at several levels. Stage 2: a two-tower model with one user embedding
per node, searched inside each node's sub-library (Faiss), merged into one list.

This implementation (the project's reading of the method, see the design notes): one shared
causal encoder (SASRec layout, with item, code and position embeddings) feeds the generator head
and the node-conditioned user tower; losses at every position: the path NLL of the target,
an exact softmax over the items of each of the target's ancestors, and a global full softmax.
Retrieval score of item i under node n: ``alpha * log P(n | u) + log softmax_{j in n} s(u_n, j)``
(``factorized``); ``mixed`` adds ``beta * h . v_i``, the global head's log-probability up to a
per-user constant, so the merge is a product of the two heads' experts.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.model.layers import TransformerEncoder

from recbole_rimirec.data.loaders import epoch_weighted, packing_of
from recbole_rimirec.data.tree_dataset import TreeDataset, tree_settings
from recbole_rimirec.errors import ConfigError, check_integer, check_item_budget
from recbole_rimirec.model.encoder import FastDropout, encode_at, encoder_input, fast_dropout, fuse_gelu
from recbole_rimirec.model.generator import TreeGenerator, distillation_loss
from recbole_rimirec.model.layers import (
    check_negatives,
    popularity_distribution,
    resolve_negatives,
    sampled_softmax_loss,
)
from recbole_rimirec.model.pathdecoder import PathDecoder
from recbole_rimirec.model.twotower import CONDITIONINGS, NodeConditionedTower
from recbole_rimirec.optim import check_sparse_item_grad
from recbole_rimirec.retrieval.index import BACKENDS, NodeIndex
from recbole_rimirec.retrieval.merge import group_by_user, merge_topk
from recbole_rimirec.retrieval.selection import (
    LEAF_ORDERS,
    budget_items,
    pair_parts,
    select_beam,
    select_frontier,
    select_leaves,
    select_subclusters,
    subcluster_budgets,
    subcluster_pairs,
)
from recbole_rimirec.tree.carry import carry_node_rows, node_item_means
from recbole_rimirec.tree.itemtree import ItemTree
from recbole_rimirec.tree.subclusters import LeafSplit, split_leaves
from recbole_rimirec.tree.tensors import TreeTensors, tree_equal, tree_from_buffers

SCORES = ("factorized", "global", "prior", "mixed")
SELECTIONS = ("frontier", *LEAF_ORDERS, "beam")


class RimiRec(SequentialRecommender):
    """RimiRec as a RecBole sequential model (see the module docstring).

    Args:
        config: the run's Config.
        dataset: the built train split of a :class:`TreeDataset`.
    """

    dataset_class = TreeDataset
    train_modes = ("all_positions", "prefixes", "random_cut")
    trims_padding = True  # causal encoder: trailing padding changes no real position

    @classmethod
    def check_config(cls, config) -> None:
        """Checks the tree and retrieval keys; the runner calls it before reading the data.

        Args:
            config: the run's Config.

        Raises:
            ConfigError: naming the first key with a value RimiRec cannot use.
        """
        tree_settings(config)
        selection, beam_size = config["select_method"] or "frontier", config["beam_size"]
        if selection not in SELECTIONS:
            raise ConfigError(f"select_method '{selection}' is not one of {', '.join(SELECTIONS)}")
        if selection == "beam" and (not isinstance(beam_size, int) or beam_size < 1):
            raise ConfigError(f"beam_size must be a positive integer, not {beam_size}")
        if config["retrieval_score"] not in SCORES:
            raise ConfigError(f"retrieval_score '{config['retrieval_score']}' is not one of {', '.join(SCORES)}")
        if config["retrieval"] not in BACKENDS:  # RimiRec always retrieves: 'full' is not offered
            raise ConfigError(f"retrieval '{config['retrieval']}' is not one of {', '.join(BACKENDS)}")
        for key in ("global_negatives", "tower_negatives"):  # auto is resolved by the library's size in __init__
            check_negatives(key, config[key])
        beta = config["global_score_weight"]
        if config["retrieval_score"] == "mixed" and (not isinstance(beta, (int, float)) or beta < 0):
            raise ConfigError(f"global_score_weight must be a number >= 0, not {beta}")
        check_item_budget("select_budget", config["select_budget"])
        max_nodes = config["select_max_nodes"]
        if not isinstance(max_nodes, int) or max_nodes < 1:
            raise ConfigError(f"select_max_nodes must be a positive integer, not {max_nodes}")
        if config["subcluster_size"] is not None:  # used by the leaf rules only; a pool below the budget is the budget
            check_integer("subcluster_size", config["subcluster_size"], 1)
            check_item_budget("subcluster_pool", config["subcluster_pool"])
            weight = config["subcluster_leaf_weight"]
            if not isinstance(weight, (int, float)) or not 0 <= weight <= 1:
                raise ConfigError(f"subcluster_leaf_weight must be a number in [0, 1], not {weight}")
        if config["node_conditioning"] not in CONDITIONINGS:
            raise ConfigError(
                f"node_conditioning '{config['node_conditioning']}' is not one of {', '.join(CONDITIONINGS)}"
            )
        check_sparse_item_grad(config, "RimiRec")

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.check_config(config)
        if getattr(dataset, "tree", None) is None:
            raise ConfigError("RimiRec needs the item tree: build its dataset with TreeDataset (the model's default)")
        H = self.hidden_size = config["hidden_size"]
        self.tree = TreeTensors(dataset.tree)
        self.sparse = bool(config["sparse_item_grad"])  # item lookups give sparse gradients (optim.LazyAdam)
        self.item_embedding = nn.Embedding(self.n_items, H, padding_idx=0, sparse=self.sparse)
        self.position_embedding = nn.Embedding(self.max_seq_length, H)
        self.code_embedding = nn.Embedding(self.tree.num_nodes, H, padding_idx=0) if config["code_input"] else None
        self.trm_encoder = TransformerEncoder(
            n_layers=config["n_layers"],
            n_heads=config["n_heads"],
            hidden_size=H,
            inner_size=config["inner_size"],
            hidden_dropout_prob=config["hidden_dropout_prob"],
            attn_dropout_prob=config["attn_dropout_prob"],
            hidden_act=config["hidden_act"],
            layer_norm_eps=config["layer_norm_eps"],
        )
        fuse_gelu(self.trm_encoder)  # torch's fused GELU, the same function
        fast_dropout(self.trm_encoder)  # the same dropout, its CPU mask drawn faster
        self.LayerNorm = nn.LayerNorm(H, eps=config["layer_norm_eps"])
        self.dropout = FastDropout(config["hidden_dropout_prob"])
        self.apply(self._init_weights)  # the encoder; generator and tower initialise themselves
        keys = (
            "generator_decoder",
            "n_heads",
            "inner_size",
            "hidden_dropout_prob",
            "layer_norm_eps",
            "node_conditioning",
        )
        self.tree_module_config = {key: config[key] for key in keys}
        self._make_heads()
        self.register_buffer("tree_rebuilds", torch.zeros((), dtype=torch.long))  # saved: a resumed run knows
        self.rebuild_warm = bool(config["tree_rebuild_warm"])
        self.generator_weight = config["generator_loss_weight"]
        self.global_weight = config["global_loss_weight"]
        self.distill_weight = config["generator_distill_weight"] or 0.0
        self.generator_detach = bool(config["generator_detach"])
        self.global_negatives = resolve_negatives(config, "global_negatives", self.n_items)
        self.tower_negatives = resolve_negatives(config, "tower_negatives", self.n_items)
        check_sparse_item_grad(config, "RimiRec")  # again, now that auto is resolved
        if self.global_negatives:
            self.register_buffer("sample_prob", popularity_distribution(dataset, self.n_items), persistent=False)
        self.alpha = config["alpha"]
        self.score = config["retrieval_score"]
        self.global_score_weight = config["global_score_weight"] or 0.0
        self.backend = config["retrieval"]
        self.budget = config["select_budget"]
        self.max_nodes = config["select_max_nodes"]
        self.selection = config["select_method"] or "frontier"
        self.beam_size = config["beam_size"]
        self.subcluster_size = config["subcluster_size"]
        self.subcluster_pool = config["subcluster_pool"] or 0.0  # below the budget: the budget
        self.subcluster_leaf_weight = config["subcluster_leaf_weight"]
        self.split: LeafSplit | None = None
        self.TARGETS = self.ITEM_ID + "_targets"
        self.index: NodeIndex | None = None

    def set_tree(self, tree: ItemTree, warm: bool = False) -> None:
        """Installs an item tree and new modules sized by it: code embeddings, generator, node tower.

        Called by :meth:`rebuild_tree` during training, and by :meth:`load_state_dict` when a
        checkpoint holds another tree (one rebuilt while it trained). The encoder and the item
        embeddings are kept.

        Args:
            tree: the tree.
            warm: start the new modules from the old ones (:mod:`~recbole_rimirec.tree.carry`): a
                node's code embedding and tower shift are the mean of its items' old ones at its depth;
                the generator's node vector is the mean of its items' embeddings and its bias the log
                of its size, so P(node | user) starts near the global head's mass per node. Otherwise
                they start as at ``__init__``.
        """
        device = self.item_embedding.weight.device
        old_tree, old_code, old_tower = self.tree, self.code_embedding, self.tower
        self.tree = TreeTensors(tree).to(device)
        if self.code_embedding is not None:
            self.code_embedding = nn.Embedding(self.tree.num_nodes, self.hidden_size, padding_idx=0)
            self._init_weights(self.code_embedding)
            self.code_embedding.to(device)
        self._make_heads()
        self.generator.to(device)
        self.tower.to(device)
        if warm:
            with torch.no_grad():
                if old_code is not None:
                    self.code_embedding.weight.copy_(carry_node_rows(old_code.weight, old_tree.codes, self.tree))
                for name in ("shift", "gain"):
                    if getattr(self.tower, name) is not None:
                        old = getattr(old_tower, name).weight
                        getattr(self.tower, name).weight.copy_(carry_node_rows(old, old_tree.codes, self.tree))
                if isinstance(self.generator, TreeGenerator) and not isinstance(self.generator, PathDecoder):
                    self.generator.node_embedding.weight.copy_(node_item_means(self.item_embedding.weight, self.tree))
                    self.generator.node_bias.copy_(self.tree.size.clamp_min(1).float().log())
        self.train(self.training)  # the new modules follow the model's mode
        self.index, self.split = None, None

    def _make_heads(self) -> None:
        """The generator and the node-conditioned tower for the current tree (they initialise themselves)."""
        config, H = self.tree_module_config, self.hidden_size
        if config["generator_decoder"]:  # a causal Transformer decoding the path, each level given its parent
            self.generator = PathDecoder(
                self.tree,
                H,
                config["n_heads"],
                config["inner_size"],
                config["hidden_dropout_prob"],
                config["layer_norm_eps"],
            )
        else:  # the hierarchical softmax on the encoder's state
            self.generator = TreeGenerator(self.tree, H)
        self.tower = NodeConditionedTower(self.tree, H, config["node_conditioning"])

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Loads weights; a checkpoint whose tree differs from the model's (rebuilt while it trained)
        first installs that tree, so the generator, tower and code embeddings get its sizes.

        Args:
            state_dict: the weights, with the tree's buffers (``tree.*``).
            strict: as ``nn.Module.load_state_dict``.
            assign: as ``nn.Module.load_state_dict``.

        Returns:
            the missing and unexpected keys, as ``nn.Module.load_state_dict``.
        """
        state_dict = dict(state_dict)
        state_dict.setdefault("tree_rebuilds", torch.zeros((), dtype=torch.long))  # checkpoints from before it
        saved = tree_from_buffers(state_dict)
        if saved is not None and not tree_equal(saved, self.tree):
            self.set_tree(saved)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def rebuild_tree(self, dataset) -> ItemTree:
        """Rebuilds the item tree from the current item embeddings (``tree_rebuild``) and installs it.

        Args:
            dataset: the train split (a :class:`TreeDataset`).

        Returns:
            ItemTree: the new tree.
        """
        tree = dataset.rebuild_tree(self.item_embedding.weight.detach().float().cpu().numpy())
        self.set_tree(tree, warm=self.rebuild_warm)
        self.tree_rebuilds += 1
        return tree

    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.data.normal_(mean=0.0, std=0.02)
        elif isinstance(module, nn.LayerNorm):
            module.bias.data.zero_()
            module.weight.data.fill_(1.0)
        if isinstance(module, nn.Linear) and module.bias is not None:
            module.bias.data.zero_()
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            module.weight.data[module.padding_idx].zero_()

    # ----- the shared causal encoder -----
    def encode_all(
        self, item_seq: torch.Tensor, positions: torch.Tensor | None = None, segments: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Causal states after every position.

        Args:
            item_seq: [B, L] left-aligned item ids.
            positions: [B, L] position of each slot in its own window (packed rows); ``None`` = 0..L-1.
            segments: [B, L] window rank of each slot (packed rows, see ``model.packing``); ``None``
                for one window per row.

        Returns:
            torch.Tensor: [B, L, H].
        """
        return self.trm_encoder(*self.encoder_input(item_seq, positions, segments), output_all_encoded_layers=True)[-1]

    def encoder_input(
        self, item_seq: torch.Tensor, positions: torch.Tensor | None = None, segments: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The encoder's input states and attention mask (arguments as :meth:`encode_all`).

        Returns:
            (x, mask): [B, L, H] and RecBole's additive mask [B, 1, L, L].
        """
        codes = None
        if self.code_embedding is not None:  # history codes: [B, L, D, H] -> [B, L, H]
            codes = self.code_embedding(self.tree.codes[item_seq]).sum(2)
        return encoder_input(self, item_seq, positions, segments, codes)

    def forward(self, item_seq, item_seq_len):
        """[B, H] the state after each user's last item (the last layer computed there only)."""
        return encode_at(self.trm_encoder, *self.encoder_input(item_seq), item_seq_len - 1)

    # ----- training -----
    def calculate_loss(self, interaction):
        """Tower + generator (+ global) losses at every target of the batch.

        Args:
            interaction: all-positions rows (``item_id_targets``, loss at every position) or
                prefix-shaped rows (loss at the last position).

        Returns:
            torch.Tensor: the scalar loss (a mean over the batch's targets, see ``epoch_weighted``).
        """
        if self.TARGETS in interaction:
            targets = interaction[self.TARGETS]  # [B, L]
            keep = targets > 0
            hidden = self.encode_all(interaction[self.ITEM_SEQ], *packing_of(interaction, self.ITEM_SEQ))  # [B, L, H]
            if not keep.any():  # a batch of rows without targets (tiny batches of split or shifted rows)
                return hidden.sum() * 0.0
            h, target = hidden[keep], targets[keep]  # [P, H], [P]
        else:
            h = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
            target = interaction[self.POS_ITEM_ID]
        weight = self.item_embedding.weight
        if self.tower_negatives:  # bounded: sampled inside nodes larger than tower_negatives
            loss = self.tower.sampled_loss(h, target, weight, self.tower_negatives, sparse=self.sparse)
        else:
            loss = self.tower.loss(h, target, weight)
        h_gen = h.detach() if self.generator_detach else h  # the path loss may train the generator's head alone
        log_p = self.generator(h_gen) if self.distill_weight else None  # [P, N], for the distillation only
        loss = loss + self.generator_weight * self.generator.loss(h_gen, target, log_p)
        if self.global_weight and self.global_negatives:  # sampled softmax, popularity proposal, log-Q corrected
            loss = loss + self.global_weight * sampled_softmax_loss(
                h, target, weight, self.sample_prob, self.global_negatives, sparse=self.sparse
            )
        if (self.global_weight and not self.global_negatives) or self.distill_weight:
            logits = h @ weight.T  # [P, n_items]
            if self.global_weight and not self.global_negatives:
                loss = loss + self.global_weight * F.cross_entropy(logits, target)
            if self.distill_weight:  # the global head's mass per leaf teaches the generator
                loss = loss + self.distill_weight * distillation_loss(log_p, logits.detach().softmax(1), self.tree)
        return epoch_weighted(loss, len(target), interaction, self.TARGETS)

    # ----- scoring -----
    def full_sort_predict(self, interaction):
        """The encoder's plain full ranking (global head); RimiRec's own evaluation is :meth:`retrieve`."""
        h = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        return h @ self.item_embedding.weight.T

    def predict(self, interaction):
        h = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        return (h * self.item_embedding(interaction[self.ITEM_ID])).sum(-1)

    def build_index(self) -> NodeIndex:
        """Indexes the current item tower by node; called before every evaluation.

        With ``subcluster_size``, the leaves are first cut into k-means clusters of the current item
        vectors (:func:`~recbole_rimirec.tree.subclusters.split_leaves`); the index then holds the
        sub-clusters as extra nodes, ids ``N + c``, so a search can cover some parts of a leaf.
        """
        tree, weight = self.tree, self.item_embedding.weight
        if self.subcluster_size and self.selection in LEAF_ORDERS:
            self.split = split = split_leaves(weight, tree, self.subcluster_size)
            lo, hi = torch.cat([tree.lo, split.lo]), torch.cat([tree.hi, split.hi])
            self.index = NodeIndex(weight, split.perm, lo, hi, self.backend)
        else:
            self.split = None
            self.index = NodeIndex(weight, tree.perm, tree.lo, tree.hi, self.backend)
        return self.index

    def select_nodes(self, log_p: torch.Tensor) -> torch.Tensor:
        """The nodes each user's retrieval searches, by ``select_method``.

        Args:
            log_p: [B, N] log P(node | user).

        Returns:
            torch.Tensor: [B, N] bool, disjoint selected nodes.
        """
        budget = budget_items(self.budget, int(self.tree.size[0]))
        if self.selection == "beam":  # a beam larger than the tree keeps every leaf
            return select_beam(log_p, self.tree, self.beam_size)
        if self.selection in LEAF_ORDERS:
            return select_leaves(log_p, self.tree, budget, self.max_nodes, self.selection)
        return select_frontier(log_p, self.tree, budget, self.max_nodes)

    @torch.no_grad()
    def candidates(self, interaction, k: int) -> dict[str, torch.Tensor]:
        """Selects each user's nodes and searches each one: the lists before they are merged.

        Args:
            interaction: a batch with the history fields (target fields are never read).
            k: results per (user, node).

        Returns:
            dict: ``log_p`` [B, N] log P(node | user); ``selected`` [B, N] bool; ``user``, ``node`` [M]
            the searched pairs; ``scores``, ``ids`` [M, k] each pair's results under the merge score;
            ``items`` [B] the items searched per user; with sub-clusters, ``chosen`` the chosen (user,
            sub-cluster) pairs, two [Q] tensors.
        """
        if self.index is None:
            self.build_index()
        h = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])  # [B, H]
        log_p = self.generator(h)  # [B, N]
        parts, extra = None, {}
        if self.split is not None:
            b, c = self.subcluster_pairs(log_p, h)  # [Q] (user, sub-cluster)
            selected = torch.zeros_like(log_p, dtype=torch.bool)
            selected[b, self.split.leaf[c]] = True
            user, node = selected.nonzero(as_tuple=True)  # [M] (user, leaf) pairs, sorted
            parts = pair_parts(b, c, user, node, self.split.leaf, self.tree.num_nodes)  # [M, P] index node ids
            items = torch.zeros(len(log_p), dtype=torch.long, device=c.device).index_add_(0, b, self.split.size[c])
            extra = {"chosen": (b, c), "items": items}  # no [B, C] mask or product: they grow with the library
        else:
            selected = self.select_nodes(log_p)  # [B, N]
            user, node = selected.nonzero(as_tuple=True)  # [M] pairs
            extra = {"items": selected.long() @ self.tree.size}
        u = self.tower.user(h[user], node) if self.score in ("factorized", "mixed") else h[user]  # [M, H]
        query, z_query = u, None
        if self.score == "mixed":
            # (u_n + beta h) . v = u_n . v + beta h . v: one search ranks by the mixed score inside
            # the node; the normaliser log_z stays the one of u_n alone
            query, z_query = u + self.global_score_weight * h[user], u
        # log_z: exact over what is searched (exact backend) or over the top k Faiss returns (an estimate)
        s, ids, log_z = self.index.search_with_logsumexp(query, node, k, parts, z_query)  # [M, k], [M, k], [M]
        if self.score in ("factorized", "mixed"):
            s = self.alpha * log_p[user, node][:, None] + s - log_z[:, None]
        elif self.score == "prior":  # the global head's score, the tree's P(node | user) as a prior
            s = self.alpha * log_p[user, node][:, None] + s
        return {"log_p": log_p, "selected": selected, "user": user, "node": node, "scores": s, "ids": ids, **extra}

    def subcluster_pairs(self, log_p: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The sub-clusters each user's retrieval searches (``subcluster_size``).

        Args:
            log_p: [B, N] log P(node | user).
            h: [B, H] user states.

        Returns:
            (user, sub-cluster): [Q] each, the chosen pairs.
        """
        return subcluster_pairs(log_p, h, *self._subcluster_args())

    def select_subclusters(self, log_p: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """:meth:`subcluster_pairs` as a [B, C] bool mask (for analysis; it grows with the library)."""
        return select_subclusters(log_p, h, *self._subcluster_args())

    def _subcluster_args(self) -> tuple:
        """The tree, the sub-clusters and the budgets :func:`subcluster_pairs` takes after ``log_p`` and ``h``."""
        sizes = subcluster_budgets(self.budget, self.subcluster_pool, int(self.tree.size[0]), self.max_nodes)
        return self.tree, self.split, *sizes, self.selection, self.subcluster_leaf_weight

    @torch.no_grad()
    def retrieve(self, interaction, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-user retrieval: select nodes, search each node's sub-library, merge by score.

        Args:
            interaction: a batch with the history fields (target fields are never read).
            k: length of the merged list.

        Returns:
            (scores, ids, nodes, items): [B, k] merged list; [B] nodes searched and items they hold.
        """
        found = self.candidates(interaction, k)
        selected = found["selected"]
        grouped = group_by_user(found["user"], found["scores"], found["ids"], len(selected))  # [B, lists x k]
        merged_s, merged_i = merge_topk(*grouped, k, distinct=True)  # the selected nodes are disjoint
        return merged_s, merged_i, selected.sum(1), found["items"]
