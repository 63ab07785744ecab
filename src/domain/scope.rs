//! Tenant isolation as a type.

use super::{OrganizationId, Role, UserId};

/// Proof that the caller may act inside one organization: made only by the auth
/// extractors (from a session with a membership, or from an API key). Every
/// organization-scoped query takes one, so a request can only ever reach rows of
/// its own organization; another organization's id simply matches nothing.
#[derive(Debug, Clone)]
pub struct TenantScope {
    organization_id: OrganizationId,
    /// The member acting; `None` for an API key.
    user_id: Option<UserId>,
    role: Role,
}

impl TenantScope {
    /// Only for `crate::auth`, after it verified membership or the key.
    pub(crate) fn verified(
        organization_id: OrganizationId,
        user_id: Option<UserId>,
        role: Role,
    ) -> Self {
        Self {
            organization_id,
            user_id,
            role,
        }
    }

    pub fn organization_id(&self) -> OrganizationId {
        self.organization_id
    }

    pub fn user_id(&self) -> Option<UserId> {
        self.user_id
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// The same scope held to `role` as well: it can only lose rights (the
    /// caller's role read again, say, after it changed during the request).
    pub fn narrowed(&self, role: Role) -> Self {
        Self {
            role: self.role.weaker(role),
            ..self.clone()
        }
    }
}
