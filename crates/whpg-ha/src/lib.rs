//! whpg-ha: high availability for the WarehousePG coordinator (and plain PostgreSQL pairs).
