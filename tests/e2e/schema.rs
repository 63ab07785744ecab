//! The first schema behaves the same on both backends.

use diesel::connection::SimpleConnection as _;
use diesel::{QueryableByName, RunQueryDsl as _, sql_query, sql_types::Text};
use frontdesk::db::models::{
    Membership, NewMembership, NewOrganization, NewUser, Organization, User,
};
use frontdesk::db::{self, DatabaseUrl, DbConnection};
use frontdesk::domain::{Email, OrganizationId, Role, Slug};

use crate::backend_tests;
use crate::helpers::{Backend, spawn_app};

backend_tests!(
    organizations_users_and_memberships_round_trip,
    foreign_keys_and_uniqueness_are_enforced,
);

async fn pool_for(app: &crate::helpers::TestApp) -> db::DbPool {
    let url = DatabaseUrl::parse(Some(&app.db.url), &app.data_dir()).unwrap();
    db::connect(&url, Some(2)).unwrap()
}

async fn organizations_users_and_memberships_round_trip(backend: Backend) {
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    let pool = pool_for(&app).await;
    let mut conn = pool.get().unwrap();

    let slug = Slug::parse("acme").unwrap();
    let org = Organization::create(&mut conn, &NewOrganization::new(&slug, "Acme Inc.")).unwrap();
    let email = Email::parse("Owner@Acme.test").unwrap();
    let user = User::create(&mut conn, &NewUser::new(&email, "Olive Owner", None)).unwrap();
    Membership::create(&mut conn, &NewMembership::new(org.id, user.id, Role::Owner)).unwrap();

    let found = Organization::find_by_slug(&mut conn, &slug)
        .unwrap()
        .unwrap();
    assert_eq!(found.id, org.id);
    assert_eq!(
        found.created_at, org.created_at,
        "timestamps round-trip exactly"
    );
    let by_email = User::find_by_email(&mut conn, &Email::parse("owner@acme.test").unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(by_email.id, user.id);
    assert!(!by_email.is_platform_admin);

    let orgs = Membership::organizations_of(&mut conn, user.id).unwrap();
    assert_eq!(orgs.len(), 1);
    assert_eq!(orgs[0].0.name, "Acme Inc.");
    assert_eq!(orgs[0].1.role(), Role::Owner);
    assert!(
        Organization::find(&mut conn, OrganizationId(org.id.0 + 1000))
            .unwrap()
            .is_none()
    );
}

#[derive(QueryableByName)]
struct JournalMode {
    #[diesel(sql_type = Text)]
    journal_mode: String,
}

#[derive(QueryableByName)]
struct Synchronous {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    synchronous: i32,
}

async fn foreign_keys_and_uniqueness_are_enforced(backend: Backend) {
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    let pool = pool_for(&app).await;
    let mut conn = pool.get().unwrap();

    let email = Email::parse("dup@acme.test").unwrap();
    let user = User::create(&mut conn, &NewUser::new(&email, "First", None)).unwrap();
    assert!(
        User::create(&mut conn, &NewUser::new(&email, "Second", None)).is_err(),
        "emails are unique"
    );

    let orphan = NewMembership::new(OrganizationId(987_654), user.id, Role::Agent);
    assert!(
        Membership::create(&mut conn, &orphan).is_err(),
        "memberships need a real organization"
    );

    let slug = Slug::parse("dup").unwrap();
    Organization::create(&mut conn, &NewOrganization::new(&slug, "One")).unwrap();
    assert!(Organization::create(&mut conn, &NewOrganization::new(&slug, "Two")).is_err());

    if let DbConnection::Sqlite(_) = &mut *conn {
        let mode: JournalMode = sql_query("PRAGMA journal_mode")
            .get_result(&mut *conn)
            .unwrap();
        assert_eq!(mode.journal_mode, "wal");
        // FULL (2): a commit, once answered for, survives a power cut.
        let sync: Synchronous = sql_query("PRAGMA synchronous")
            .get_result(&mut *conn)
            .unwrap();
        assert_eq!(sync.synchronous, 2);
    }
    // The connection is still usable after the failed statements.
    conn.batch_execute("SELECT 1").unwrap();
}
