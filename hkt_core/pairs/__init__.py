"""Pair cards: the card itself (:mod:`.card`), the user's store of added cards (:mod:`.store`),
scaffolding a new card from a data set and two models (:mod:`.scaffold`) and the checks ``hkt
pairs add`` runs before storing one (:mod:`.checks`).

``hkt_core.pairs`` keeps serving the card module's names (``PairCard``, ``hkt_home``, ...)."""

from .card import (INPUT_DTYPES, MAX_EXAMPLE_BATCH, MAX_EXAMPLE_ELEMENTS, MAX_NAME, NAME_RE, OPTION_TABLES, PairCard,
                   check_name, hkt_home, path_options, read_toml_text, register_cards_from, resolve_card_paths,
                   resolve_path, shipped_cards_folder)
from .store import add_user_card, remove_user_card, user_cards, user_pairs_dir

__all__ = ["INPUT_DTYPES", "MAX_EXAMPLE_BATCH", "MAX_EXAMPLE_ELEMENTS", "MAX_NAME", "NAME_RE", "OPTION_TABLES", "PairCard",
           "add_user_card", "check_name", "hkt_home", "path_options", "read_toml_text", "register_cards_from",
           "remove_user_card", "resolve_card_paths", "resolve_path", "shipped_cards_folder", "user_cards",
           "user_pairs_dir"]
