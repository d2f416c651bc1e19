//! `/primary` and `/standby`: role checks for load balancers (HAProxy `option httpchk`) and
//! monitoring. 200 when this node is that role and fit to serve it, 503 otherwise; the body says
//! why in one line.

use crate::status::{DbRoleStatus, NodeStatus};

/// This node is where writes must go: it holds the virtual address and (when the database is
/// monitored) its database is a healthy primary that is neither fenced nor an old primary.
pub fn primary(status: &NodeStatus) -> Result<(), String> {
    if !status.holds_vips {
        return Err("does not hold the virtual address".into());
    }
    if !status.vips_missing.is_empty() {
        return Err(format!(
            "virtual address {} was removed from the interface and is being put back",
            status.vips_missing.join(", ")
        ));
    }
    let Some(db) = &status.database else {
        // database.monitor = false: the virtual address is all there is.
        return Ok(());
    };
    if db.role != DbRoleStatus::Primary {
        return Err(format!("database role is {}", db.role));
    }
    if !db.healthy {
        return Err("database is not healthy".into());
    }
    if let Some(reason) = &db.fenced {
        return Err(format!("database is fenced ({reason})"));
    }
    if db.needs_rejoin {
        return Err("database is an old primary that needs rejoin".into());
    }
    Ok(())
}

/// This node's database is a healthy standby whose WAL receiver is streaming. Never true with
/// `database.monitor = false` (nothing is known about the database).
pub fn standby(status: &NodeStatus) -> Result<(), String> {
    let Some(db) = &status.database else {
        return Err("database.monitor = false: the database is not watched".into());
    };
    if db.role != DbRoleStatus::Standby {
        return Err(format!("database role is {}", db.role));
    }
    if !db.healthy {
        return Err("database is not healthy".into());
    }
    if let Some(reason) = &db.fenced {
        return Err(format!("database is fenced ({reason})"));
    }
    match &db.wal_receiver {
        Some(wal) if wal.streaming => Ok(()),
        Some(_) => Err("WAL receiver is not streaming".into()),
        None => Err("no WAL receiver (or it could not be queried)".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{DatabaseStatus, WalReceiverStatus};

    fn db(role: DbRoleStatus, healthy: bool, streaming: Option<bool>) -> DatabaseStatus {
        DatabaseStatus {
            role,
            healthy,
            timeline: Some(1),
            needs_rejoin: false,
            fenced: None,
            isolated: false,
            maintenance: false,
            promoting: false,
            promotion_gave_up: false,
            promotion_hold: None,
            wal_receiver: streaming.map(|streaming| WalReceiverStatus {
                streaming,
                last_message_ms_ago: Some(10),
            }),
            replication: None,
        }
    }

    fn node(holds_vips: bool, database: Option<DatabaseStatus>) -> NodeStatus {
        let mut status = crate::status::test_status();
        status.holds_vips = holds_vips;
        status.database = database;
        status
    }

    #[test]
    fn primary_needs_the_vip_and_a_healthy_writable_database() {
        assert!(primary(&node(true, Some(db(DbRoleStatus::Primary, true, None)))).is_ok());
        assert!(primary(&node(false, Some(db(DbRoleStatus::Primary, true, None)))).is_err());
        assert!(primary(&node(
            true,
            Some(db(DbRoleStatus::Standby, true, Some(true)))
        ))
        .is_err());
        assert!(primary(&node(true, Some(db(DbRoleStatus::Primary, false, None)))).is_err());
        let mut fenced = db(DbRoleStatus::Primary, true, None);
        fenced.fenced = Some("Isolated".into());
        assert!(primary(&node(true, Some(fenced))).is_err());
        let mut old = db(DbRoleStatus::Primary, true, None);
        old.needs_rejoin = true;
        assert!(primary(&node(true, Some(old))).is_err());
    }

    #[test]
    fn a_held_virtual_address_missing_from_the_interface_is_not_primary() {
        let mut status = node(true, None);
        assert!(primary(&status).is_ok());
        status.vips_missing = vec!["10.77.0.100".into()];
        let why = primary(&status).unwrap_err();
        assert!(
            why.contains("10.77.0.100") && why.contains("put back"),
            "{why}"
        );
    }

    #[test]
    fn without_database_monitoring_primary_is_holding_the_vip() {
        assert!(primary(&node(true, None)).is_ok());
        assert!(primary(&node(false, None)).is_err());
        assert!(standby(&node(false, None)).is_err());
    }

    #[test]
    fn standby_needs_a_healthy_streaming_standby() {
        assert!(standby(&node(
            false,
            Some(db(DbRoleStatus::Standby, true, Some(true)))
        ))
        .is_ok());
        assert!(standby(&node(
            false,
            Some(db(DbRoleStatus::Standby, true, Some(false)))
        ))
        .is_err());
        assert!(standby(&node(false, Some(db(DbRoleStatus::Standby, true, None)))).is_err());
        assert!(standby(&node(
            false,
            Some(db(DbRoleStatus::Standby, false, Some(true)))
        ))
        .is_err());
        assert!(standby(&node(false, Some(db(DbRoleStatus::Primary, true, None)))).is_err());
        assert!(standby(&node(false, Some(db(DbRoleStatus::Unknown, false, None)))).is_err());
    }
}
