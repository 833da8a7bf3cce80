//! The roles: each runner wires ports to the domain and runs until shut down.
