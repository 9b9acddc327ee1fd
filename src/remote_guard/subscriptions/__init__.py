"""Microsoft Graph change notifications: what must be known within seconds.

A pupil posting in a live meeting's chat, a call that ended (its call record), and, as an
opt-in because Microsoft documents it on the beta endpoint only, who is in a live Teams meeting
(CallStarted, CallRosterUpdate, CallEnded). ``manager`` keeps the subscriptions (create, renew
before expiry, recreate, delete after the meeting); ``receiver`` answers Graph (validation
handshake, clientState check, 202 at once) and queues what arrived; ``worker`` hands each item
to ``handlers`` in the background; ``live`` keeps the live chat and roster and folds them into
the stored snapshots, which are evaluated again at once; ``alerts`` raises a live alert to SLT
when a teacher is left alone with a pupil without a valid registration. ``hub`` assembles them.

Polling stays the source of truth and the safety net: a finding raised from a notification is
confirmed or retired by the poll after the meeting, as any other.
"""
