"""Pilot and the baselines as a Flower app: a ServerApp and a ClientApp in separate processes.

arrays       parameter pytrees <-> Flower ArrayRecords (no pickle)
protocol     what a message carries (round, stage, fingerprint, roster), the config loader
site         one site: its own config and data, the client program, what it keeps
client_app   the ClientApp (query / train / evaluate handlers)
exchange     one bounded exchange of messages (timeouts, sites that leave)
server       the ServerApp's rounds (methods.pilot.rounds), checkpoints, evaluation
server_app   the ServerApp
launch       a SuperLink and N SuperNodes on the loopback interface, and the run
app/         the Flower App Bundle (pyproject.toml naming the two apps)
"""
