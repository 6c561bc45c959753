"""Several hosts on one PostgreSQL board, simulated on one machine: each host
a set of Linux namespaces (its own hostname, process ids and data home at the
same path), all sharing the network, so their supervisors and web nodes reach
one PostgreSQL server and each other over loopback."""
