"""The site's half of update DP: Flower's ``fixedclipping_mod`` on training messages that ask for it.

With ``[privacy.updates] clipping = "client"`` the server's Flower wrapper puts the
clipping norm into each training message's config record; this mod then runs Flower's own
``fixedclipping_mod``, which clips the site's update (its encoder minus the one it
received) to that L2 norm before the reply leaves. Other messages (round 0, evaluation,
runs without update DP) pass untouched: Flower's mod would refuse them for lacking the key.
"""

from __future__ import annotations

from flwr.app import Context, Message
from flwr.clientapp.mod import fixedclipping_mod
from flwr.clientapp.typing import ClientAppCallable
from flwr.supercore.differential_privacy import KEY_CLIPPING_NORM

from shared.wire_keys import Action, RecordKey


def clip_updates(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Flower mod: clip a training reply's update when the server asks for it."""
    config = msg.content.config_records.get(RecordKey.CONFIG)
    if msg.metadata.message_type != Action.TRAIN or config is None or KEY_CLIPPING_NORM not in config:
        return call_next(msg, context)
    return fixedclipping_mod(msg, context, call_next)
