//! The bus contract.
