"""The pure core: the domain's data (model), the rule state machine (rules), one evaluation of
the rule table (evaluate), the safety policy (decide), evidence, incidents, the messages'
texts and the fleet's plain data and decisions (fleetmodel). No I/O and no clock: time and
the signals' results come in, new states, verdicts and messages go out. Tested with tables
and a fake clock. Imports only watcher.base."""
