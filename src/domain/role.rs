use super::ParseError;

/// A member's role in an organization, strongest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Owner,
    Admin,
    Agent,
    Viewer,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Owner, Role::Admin, Role::Agent, Role::Viewer];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Admin => "admin",
            Self::Agent => "agent",
            Self::Viewer => "viewer",
        }
    }

    /// The one of the two with fewer rights.
    pub fn weaker(self, other: Role) -> Role {
        let rank = |r: Role| Role::ALL.iter().position(|x| *x == r);
        if rank(self) >= rank(other) {
            self
        } else {
            other
        }
    }

    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == raw.trim())
            .ok_or_else(|| ParseError("must be owner, admin, agent or viewer".into()))
    }
}

/// Everything a role may be allowed to do. The table below is the only place
/// that decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// See the organization's data (everyone).
    Read,
    /// Work conversations and tickets.
    Respond,
    /// Invite, remove and change the roles of members.
    ManageMembers,
    /// Create and revoke API keys.
    ManageApiKeys,
    /// Read the audit log.
    ViewAudit,
    /// Change organization settings and billing.
    ManageSettings,
    /// Grant or take away the owner role.
    ManageOwners,
}

impl Role {
    pub fn can(self, permission: Permission) -> bool {
        use Permission::*;
        match self {
            Role::Owner => true,
            Role::Admin => !matches!(permission, ManageOwners),
            Role::Agent => matches!(permission, Read | Respond),
            Role::Viewer => matches!(permission, Read),
        }
    }

    /// Roles this role may hand out.
    pub fn grantable(self) -> Vec<&'static str> {
        Role::ALL
            .into_iter()
            .filter(|r| *r != Role::Owner || self.can(Permission::ManageOwners))
            .filter(|_| self.can(Permission::ManageMembers))
            .map(Role::as_str)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::{Permission, Role};

    #[test]
    fn permission_table() {
        assert!(Role::Owner.can(Permission::ManageOwners));
        assert!(Role::Admin.can(Permission::ManageMembers));
        assert!(!Role::Admin.can(Permission::ManageOwners));
        assert!(Role::Agent.can(Permission::Respond));
        assert!(!Role::Agent.can(Permission::ManageApiKeys));
        assert!(!Role::Viewer.can(Permission::Respond));
        assert_eq!(Role::Admin.grantable(), vec!["admin", "agent", "viewer"]);
        assert!(Role::Viewer.grantable().is_empty());
        assert_eq!(Role::Admin.weaker(Role::Owner), Role::Admin);
        assert_eq!(Role::Admin.weaker(Role::Agent), Role::Agent);
        assert_eq!(Role::Viewer.weaker(Role::Viewer), Role::Viewer);
    }
}
