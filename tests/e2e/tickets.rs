//! Tickets: a visitor asks for a person, the team answers from the ticket, the
//! visitor reads it in the chat; notes stay in the team; every step is on the
//! timeline.

use diesel::prelude::*;
use frontdesk::db::schema::users;
use frontdesk::domain::Role;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::accounts::{Browser, organization_with_key, signed_in_member};
use crate::backend_tests;
use crate::chat::{Api, say, support_chat};
use crate::helpers::{Backend, TestApp, spawn_app};

backend_tests!(
    a_visitor_asks_for_a_person_and_the_team_answers_from_the_ticket,
    bad_ticket_input_is_refused_and_changes_nothing,
    another_organizations_tickets_answer_404,
    a_member_who_can_no_longer_answer_gives_their_tickets_back,
    a_conversation_handed_back_to_the_agent_and_its_ticket_agree,
);

const QUESTION: &str = "My bike chain broke on the way to work, can someone help?";

fn user_id(app: &TestApp, email: &str) -> i64 {
    users::table
        .filter(users::email.eq(email))
        .select(users::id)
        .first(&mut app.pool().get().unwrap())
        .unwrap()
}

fn org_id(app: &TestApp) -> i64 {
    app.org_id("harbor-bikes")
}

async fn escalate(app: &TestApp, chat: &Value) -> StatusCode {
    crate::chat::escalate(app, "harbor-bikes", "support", chat).await
}

/// What the visitor's chat shows: the public transcript, with its token.
async fn visitor_view(app: &TestApp, chat: &Value) -> Value {
    crate::chat::transcript(app, chat)
        .await
        .json()
        .await
        .unwrap()
}

/// An organization with a "support" agent, a visitor who asked a question
/// and then for a person; returns the owner, the API, the chat and the ticket id.
async fn escalated(app: &TestApp) -> (Browser, Api<'_>, Value, i64) {
    let (owner, key) = organization_with_key(app, "Harbor Bikes", "owner@harbor.test").await;
    let api = Api { app, key };
    api.agent(json!({"name": "Support"})).await;
    let chat = support_chat(app).await;
    assert_eq!(
        say(app, "harbor-bikes", "support", &chat, QUESTION)
            .await
            .status(),
        200
    );
    // Asking twice, even at the same moment, makes one ticket.
    let asks = (0..4).map(|_| escalate(app, &chat));
    for status in futures_util::future::join_all(asks).await {
        assert_eq!(status, 200);
    }
    assert_eq!(escalate(app, &chat).await, 200);
    let (status, list) = api.get("/api/v1/tickets").await;
    assert_eq!(status, 200, "{list}");
    let tickets = list["data"].as_array().unwrap();
    assert_eq!(tickets.len(), 1, "{list}");
    let id = tickets[0]["id"].as_i64().unwrap();
    (owner, api, chat, id)
}

async fn a_visitor_asks_for_a_person_and_the_team_answers_from_the_ticket(backend: Backend) {
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    let (owner, api, chat, id) = escalated(&app).await;
    let (_, ticket) = api.get(&format!("/api/v1/tickets/{id}")).await;
    assert_eq!(ticket["status"], "open");
    assert_eq!(ticket["subject"], QUESTION);
    assert_eq!(ticket["conversationId"], chat["conversationId"]);
    assert_eq!(ticket["events"][0]["kind"], "opened");
    assert_eq!(ticket["events"][0]["actor"], "Visitor");

    // The queue and the ticket page.
    let (status, queue) = owner.get("/app/tickets").await;
    assert_eq!(status, 200);
    assert!(
        queue.contains(&format!("href=\"/app/tickets/{id}\"")),
        "{queue}"
    );
    assert!(queue.contains("Open (1)"), "{queue}");
    let page = format!("/app/tickets/{id}");
    let (status, html) = owner.get(&page).await;
    assert_eq!(status, 200);
    assert!(
        html.contains("chain broke") && html.contains("asked for a person"),
        "{html}"
    );

    // The owner replies from the page: the visitor sees it, the ticket waits for them.
    let res = owner
        .submit(
            &page,
            &format!("{page}/reply"),
            &[("content", "We can fix it today: come by before 6pm.")],
        )
        .await;
    assert_eq!(res.status(), 303);
    let seen = visitor_view(&app, &chat).await;
    let staff: Vec<&Value> = seen["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "staff")
        .collect();
    assert_eq!(staff.len(), 1, "{seen}");
    assert_eq!(
        staff[0]["content"],
        "We can fix it today: come by before 6pm."
    );
    let (_, ticket) = api.get(&format!("/api/v1/tickets/{id}")).await;
    assert_eq!(ticket["status"], "pending");

    // A note is for the team only.
    let (status, _) = api
        .json(
            Method::POST,
            &format!("/api/v1/tickets/{id}/notes"),
            json!({"content": "Customer since 2019, give the loyalty discount."}),
        )
        .await;
    assert_eq!(status, 201);
    assert!(
        !visitor_view(&app, &chat)
            .await
            .to_string()
            .contains("loyalty")
    );
    let (_, html) = owner.get(&page).await;
    assert!(
        html.contains("loyalty discount") && html.contains("is-note"),
        "{html}"
    );

    // The visitor answers: the team's turn again, and the agent, with a person
    // on the case, does not talk over them.
    let before = visitor_view(&app, &chat).await["messages"]
        .as_array()
        .unwrap()
        .len();
    let res = say(
        &app,
        "harbor-bikes",
        "support",
        &chat,
        "Great, see you at 5!",
    )
    .await;
    assert_eq!(res.status(), 200);
    let answer: Value = res.json().await.unwrap();
    assert_eq!(answer["provider"], "team", "{answer}");
    assert!(
        answer["content"]
            .as_str()
            .unwrap()
            .contains("team has your message")
    );
    let after = visitor_view(&app, &chat).await;
    let messages = after["messages"].as_array().unwrap();
    assert_eq!(
        messages.len(),
        before + 1,
        "only the visitor's message was added"
    );
    assert_eq!(messages.last().unwrap()["role"], "visitor");
    let (_, ticket) = api.get(&format!("/api/v1/tickets/{id}")).await;
    assert_eq!(ticket["status"], "open");
    // The timeline names members as the app does, and says what the visitor did.
    let (_, html) = owner.get(&page).await;
    assert!(
        html.contains("<strong>Test Person</strong> replied")
            && !html.contains("<strong>owner@harbor.test</strong>"),
        "{html}"
    );
    assert!(
        html.contains("<strong>Visitor</strong> wrote again, so it is open again"),
        "{html}"
    );

    // Assigned to a colleague, who is emailed a link to the ticket.
    let (_, colleague) = signed_in_member(&app, org_id(&app), "sam@harbor.test", Role::Agent).await;
    let sam = user_id(&app, "sam@harbor.test");
    let res = owner
        .submit(
            &page,
            &format!("{page}/assign"),
            &[("assignee", &sam.to_string())],
        )
        .await;
    assert_eq!(res.status(), 303);
    let mail = crate::accounts::wait_for_mail(
        &app.data_dir().join("mail"),
        "sam@harbor.test",
        &format!("Ticket #{id} assigned to you"),
    )
    .await;
    let link = crate::accounts::link(&mail, &format!("/app/tickets/{id}"));
    let harbor = org_id(&app);
    assert!(
        link.ends_with(&format!("/app/tickets/{id}?org={harbor}")),
        "{link}"
    );
    let emailed = &link[link.find("/app/").unwrap()..];
    let (status, html) = colleague.get(emailed).await;
    assert_eq!(status, 200, "the emailed link opens the ticket");
    assert!(html.contains("assigned it to"), "{html}");

    // Sam works for another organization too and has it open: the emailed
    // link opens the ticket in its own organization all the same.
    let boss = Browser::new(&app);
    assert_eq!(
        boss.signup("Other Shop", "boss@other.test").await.status(),
        303
    );
    let other = app.org_id("other-shop");
    frontdesk::db::models::Membership::create(
        &mut app.pool().get().unwrap(),
        &frontdesk::db::models::NewMembership::new(
            frontdesk::domain::OrganizationId(other),
            frontdesk::domain::UserId(sam),
            Role::Agent,
        ),
    )
    .unwrap();
    let switched = colleague
        .submit(
            "/app/members",
            "/app/switch",
            &[("organization_id", &other.to_string())],
        )
        .await;
    assert_eq!(switched.status(), 303);
    assert_eq!(colleague.get(&format!("/app/tickets/{id}")).await.0, 404);
    // The emailed link asks before it switches: a link alone changes nothing.
    let (status, html) = colleague.get(emailed).await;
    assert_eq!(status, 200);
    assert!(html.contains("Switch to Harbor Bikes"), "{html}");
    assert_eq!(colleague.get(&format!("/app/tickets/{id}")).await.0, 404);
    let switched = colleague
        .submit(
            emailed,
            "/app/switch",
            &[
                ("organization_id", &harbor.to_string()),
                ("next", &format!("/app/tickets/{id}")),
            ],
        )
        .await;
    assert_eq!(switched.status(), 303);
    assert_eq!(
        switched.headers()["location"],
        format!("/app/tickets/{id}").as_str()
    );
    let (status, html) = colleague.get(&format!("/app/tickets/{id}")).await;
    assert_eq!(status, 200);
    assert!(html.contains("assigned it to"), "{html}");
    // Where a switch leads is a page of the app, never another site.
    for next in ["//evil.test/x", "https://evil.test/", "/login"] {
        let res = colleague
            .submit(
                "/app/members",
                "/app/switch",
                &[("organization_id", &harbor.to_string()), ("next", next)],
            )
            .await;
        assert_eq!(res.headers()["location"], "/app", "{next}");
    }
    // An organization they do not belong to is not switched to.
    let (status, _) = boss.get(&format!("/app/tickets/{id}?org={harbor}")).await;
    assert_eq!(status, 404);
    // A hand-edited filter: the open tickets, and why the filter was not used.
    let (status, html) = colleague.get("/app/tickets?status=bogus").await;
    assert_eq!(status, 200, "a bad filter is a message, not an error page");
    assert!(
        html.contains("status must be open, pending, solved or all"),
        "{html}"
    );
    let (_, mine) = colleague.get("/app/tickets?status=all&assigned=me").await;
    assert!(
        mine.contains(&format!("href=\"/app/tickets/{id}\"")),
        "{mine}"
    );
    let (_, nobodys) = colleague
        .get("/app/tickets?status=all&assigned=nobody")
        .await;
    assert!(!nobodys.contains(&format!("href=\"/app/tickets/{id}\"")));
    // A user id from a link stays the filter shown, not "Anyone".
    let (_, by_id) = colleague
        .get("/app/tickets?status=all&assigned=424242")
        .await;
    assert!(
        by_id.contains(r#"<option value="424242" selected>"#)
            && !by_id.contains(r#"<option value="anyone" selected>"#),
        "{by_id}"
    );

    // Solved: the conversation closes to the visitor.
    let (status, solved) = api
        .json(
            Method::PATCH,
            &format!("/api/v1/tickets/{id}"),
            json!({"status": "solved"}),
        )
        .await;
    assert_eq!(status, 200, "{solved}");
    assert!(solved["solvedAt"].is_string());
    assert_eq!(visitor_view(&app, &chat).await["status"], "resolved");
    assert_eq!(
        say(&app, "harbor-bikes", "support", &chat, "One more thing")
            .await
            .status(),
        410
    );

    // The timeline tells the story, in order.
    let (_, ticket) = api.get(&format!("/api/v1/tickets/{id}")).await;
    let kinds: Vec<&str> = ticket["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["opened", "reply", "note", "status", "assigned", "status"]
    );
    assert_eq!(ticket["events"][3]["body"], "open");
    assert_eq!(ticket["events"][5]["body"], "solved");

    // The visitor asks for a person again in a new conversation: a new ticket;
    // the team reopening the old one takes its conversation up again.
    let (status, reopened) = api
        .json(
            Method::PATCH,
            &format!("/api/v1/tickets/{id}"),
            json!({"status": "open", "assigneeId": null}),
        )
        .await;
    assert_eq!(status, 200, "{reopened}");
    assert_eq!(reopened["assigneeId"], Value::Null);
    assert_eq!(visitor_view(&app, &chat).await["status"], "escalated");
    let (_, doc) = api.get("/api/v1/openapi.json").await;
    for path in [
        "/api/v1/tickets",
        "/api/v1/tickets/{id}",
        "/api/v1/tickets/{id}/replies",
        "/api/v1/tickets/{id}/notes",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} documented");
    }

    // A reply to a solved ticket opens it again, and the page does not
    // promise that the visitor (whose chat closed) sees it.
    let (status, _) = api
        .json(
            Method::PATCH,
            &format!("/api/v1/tickets/{id}"),
            json!({"status": "solved"}),
        )
        .await;
    assert_eq!(status, 200);
    let page = format!("/app/tickets/{id}");
    let res = owner
        .submit(
            &page,
            &format!("{page}/reply"),
            &[("content", "Anything else?")],
        )
        .await;
    assert_eq!(res.status(), 303);
    let (_, html) = owner.get(&page).await;
    assert!(
        html.contains("waits for the visitor again")
            && html.contains("showed the conversation as closed")
            && !html.contains("the visitor sees it in their chat"),
        "{html}"
    );
    // The timeline says it was taken up again, after the reply.
    let (_, ticket) = api.get(&format!("/api/v1/tickets/{id}")).await;
    let events = ticket["events"].as_array().unwrap();
    let last = &events[events.len() - 1];
    assert_eq!(
        (last["kind"].as_str(), last["body"].as_str()),
        (Some("status"), Some("pending")),
        "{ticket}"
    );
    assert_eq!(events[events.len() - 2]["kind"], "reply", "{ticket}");
}

async fn bad_ticket_input_is_refused_and_changes_nothing(backend: Backend) {
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    let (owner, api, chat, id) = escalated(&app).await;
    let page = format!("/app/tickets/{id}");
    let staff_count = |view: Value| {
        view["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["role"] == "staff")
            .count()
    };

    // An empty reply: the message beside the field, nothing sent.
    let res = owner
        .submit(&page, &format!("{page}/reply"), &[("content", "   ")])
        .await;
    assert_eq!(res.status(), 422);
    let html = res.text().await.unwrap();
    assert!(html.contains("The reply is empty."), "{html}");
    // Too long: refused, and what was typed is kept.
    let long = "é".repeat(8001);
    let res = owner
        .submit(&page, &format!("{page}/reply"), &[("content", &long)])
        .await;
    assert_eq!(res.status(), 422);
    let html = res.text().await.unwrap();
    assert!(
        html.contains("at most 8000 characters") && html.contains(&long[..200]),
        "kept"
    );
    assert_eq!(staff_count(visitor_view(&app, &chat).await), 0);
    // The longest text fits the form in any script (CJK: three bytes a
    // character, each sent as %XX).
    let cjk = "票".repeat(8000);
    let res = owner
        .submit(&page, &format!("{page}/notes"), &[("note", &cjk)])
        .await;
    assert_eq!(res.status(), 303);

    // Markup in a reply is text, on the ticket page and in the visitor's view.
    let xss = "<img src=x onerror=alert(1)> thanks";
    let (status, _) = api
        .json(
            Method::POST,
            &format!("/api/v1/tickets/{id}/replies"),
            json!({"content": xss}),
        )
        .await;
    assert_eq!(status, 201);
    let (_, html) = owner.get(&page).await;
    assert!(
        !html.contains("<img src=x") && html.contains("&#60;img src=x"),
        "{html}"
    );

    // API: unknown status, nothing to change, unknown fields, a non-member.
    for (body, code) in [
        (json!({"status": "closed"}), 422),
        (json!({}), 422),
        (json!({"priority": "high"}), 422),
        (json!({"assigneeId": 999_999}), 422),
    ] {
        let (status, err) = api
            .json(
                Method::PATCH,
                &format!("/api/v1/tickets/{id}"),
                body.clone(),
            )
            .await;
        assert_eq!(status.as_u16(), code, "{body}: {err}");
        assert!(err["code"].is_string(), "{err}");
    }
    // A viewer may read tickets but not answer or assign them; nor be assigned.
    let (_, viewer) = signed_in_member(&app, org_id(&app), "vic@harbor.test", Role::Viewer).await;
    let (status, _) = viewer.get(&page).await;
    assert_eq!(status, 200);
    let res = viewer
        .submit(
            &page,
            &format!("{page}/reply"),
            &[("content", "Hello from a viewer")],
        )
        .await;
    assert_eq!(res.status(), 403);
    let vic = user_id(&app, "vic@harbor.test");
    let res = owner
        .submit(
            &page,
            &format!("{page}/assign"),
            &[("assignee", &vic.to_string())],
        )
        .await;
    assert_eq!(res.status(), 422);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("who can answer conversations")
    );
    // Not a user id at all: the same message beside the field.
    let res = owner
        .submit(&page, &format!("{page}/assign"), &[("assignee", "sam")])
        .await;
    assert_eq!(res.status(), 422);
    let html = res.text().await.unwrap();
    assert!(html.contains("who can answer conversations"), "{html}");
    let read_key = owner.api_key("read", "read").await;
    let res = app
        .client
        .post(app.url(&format!("/api/v1/tickets/{id}/replies")))
        .bearer_auth(&read_key)
        .json(&json!({"content": "hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    // Bad list filters.
    for q in ["status=closed", "assigned=me", "per_page=0", "page=0"] {
        let (status, err) = api.get(&format!("/api/v1/tickets?{q}")).await;
        assert_eq!(status, 422, "{q}: {err}");
    }
    let (_, ticket) = api.get(&format!("/api/v1/tickets/{id}")).await;
    assert_eq!(
        ticket["status"], "pending",
        "only the one good reply changed it"
    );
    assert_eq!(ticket["assigneeId"], Value::Null);
    assert_eq!(staff_count(visitor_view(&app, &chat).await), 1);
}

async fn another_organizations_tickets_answer_404(backend: Backend) {
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    let (_, _, _, id) = escalated(&app).await;
    let (other, other_key) = organization_with_key(&app, "Other Shop", "owner@other.test").await;
    let page = format!("/app/tickets/{id}");
    let (status, _) = other.get(&page).await;
    assert_eq!(status, 404);
    for (action, fields) in [
        ("reply", vec![("content", "hi")]),
        ("notes", vec![("note", "hi")]),
        ("assign", vec![("assignee", "")]),
        ("status", vec![("status", "solved")]),
    ] {
        let res = other
            .submit("/app/tickets", &format!("{page}/{action}"), &fields)
            .await;
        assert_eq!(res.status(), 404, "{action}");
    }
    let api = Api {
        app: &app,
        key: other_key,
    };
    let (status, list) = api.get("/api/v1/tickets").await;
    assert_eq!(status, 200);
    assert!(list["data"].as_array().unwrap().is_empty(), "{list}");
    for (method, path, body) in [
        (Method::GET, format!("/api/v1/tickets/{id}"), Value::Null),
        (
            Method::PATCH,
            format!("/api/v1/tickets/{id}"),
            json!({"status": "solved"}),
        ),
        (
            Method::POST,
            format!("/api/v1/tickets/{id}/replies"),
            json!({"content": "hi"}),
        ),
        (
            Method::POST,
            format!("/api/v1/tickets/{id}/notes"),
            json!({"content": "hi"}),
        ),
    ] {
        let (status, err) = api.json(method.clone(), &path, body).await;
        assert_eq!(status, 404, "{method} {path}: {err}");
        assert_eq!(err["code"], "NOT_FOUND");
    }
}

async fn a_member_who_can_no_longer_answer_gives_their_tickets_back(backend: Backend) {
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    let (owner, api, _chat, id) = escalated(&app).await;
    let org = org_id(&app);
    let (ann, _) = signed_in_member(&app, org, "ann@harbor.test", Role::Agent).await;
    let (bea, _) = signed_in_member(&app, org, "bea@harbor.test", Role::Agent).await;
    let ticket = format!("/api/v1/tickets/{id}");
    let assign = |email: &'static str| {
        let api = &api;
        let ticket = &ticket;
        let user = user_id(&app, email);
        async move {
            let (status, body) = api
                .json(Method::PATCH, ticket, json!({"assigneeId": user}))
                .await;
            assert_eq!(status, 200, "{body}");
            assert_eq!(body["assigneeId"], user);
        }
    };
    let last_event = || async {
        let (_, body) = api.get(&ticket).await;
        assert_eq!(body["assigneeId"], Value::Null, "{body}");
        body["events"].as_array().unwrap().last().unwrap().clone()
    };
    let queued = || async {
        let (_, html) = owner.get("/app/tickets?status=all&assigned=nobody").await;
        html.contains(&format!("href=\"/app/tickets/{id}\""))
    };

    // Made a viewer: the ticket goes back to the queue, saying why.
    assign("ann@harbor.test").await;
    assert!(!queued().await);
    let res = owner
        .api(
            Method::PATCH,
            &format!("/api/v1/members/{ann}"),
            json!({"role": "viewer"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let event = last_event().await;
    assert_eq!(event["kind"], "unassigned");
    assert!(
        event["body"]
            .as_str()
            .unwrap()
            .contains("can no longer answer"),
        "{event}"
    );
    assert!(queued().await, "back in the nobody-yet queue");
    let (_, page) = owner.get(&format!("/app/tickets/{id}")).await;
    assert!(page.contains("unassigned it: "), "{page}");

    // Removed: the same.
    assign("bea@harbor.test").await;
    let res = owner
        .submit("/app/members", &format!("/app/members/{bea}/remove"), &[])
        .await;
    assert_eq!(res.status(), 303);
    let event = last_event().await;
    assert!(
        event["body"].as_str().unwrap().contains("removed"),
        "{event}"
    );
    assert!(queued().await);

    // A change between roles that may both answer keeps the ticket.
    let (cat, _) = signed_in_member(&app, org, "cat@harbor.test", Role::Agent).await;
    assign("cat@harbor.test").await;
    let res = owner
        .api(
            Method::PATCH,
            &format!("/api/v1/members/{cat}"),
            json!({"role": "admin"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let (_, body) = api.get(&ticket).await;
    assert_eq!(body["assigneeId"], user_id(&app, "cat@harbor.test"));
}

async fn a_conversation_handed_back_to_the_agent_and_its_ticket_agree(backend: Backend) {
    let Some(app) = spawn_app(backend).start().await else {
        return;
    };
    let (owner, api, chat, id) = escalated(&app).await;
    let ticket = format!("/api/v1/tickets/{id}");
    let conversation = format!("/api/v1/conversations/{}", chat["conversationId"]);
    let (status, _) = api
        .json(
            Method::POST,
            &format!("{ticket}/replies"),
            json!({"content": "Looking into it."}),
        )
        .await;
    assert_eq!(status, 201);

    // The team hands the conversation back: the ticket is done with, and the
    // agent answers the visitor again instead of "the team has it".
    let (status, body) = api
        .json(
            Method::PUT,
            &format!("{conversation}/status"),
            json!({"status": "open"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, t) = api.get(&ticket).await;
    assert_eq!(t["status"], "solved", "{t}");
    let res = say(
        &app,
        "harbor-bikes",
        "support",
        &chat,
        "Thanks, and the opening hours?",
    )
    .await;
    assert_eq!(res.status(), 200);
    let reply: Value = res.json().await.unwrap();
    assert_ne!(reply["provider"], "team", "{reply}");

    // A reply from the ticket takes the conversation back for the team.
    let (status, _) = api
        .json(
            Method::POST,
            &format!("{ticket}/replies"),
            json!({"content": "One more thing from us."}),
        )
        .await;
    assert_eq!(status, 201);
    let (_, list) = api.get("/api/v1/conversations").await;
    let c = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == chat["conversationId"])
        .unwrap();
    assert_eq!(c["status"], "escalated", "{c}");
    let res = say(&app, "harbor-bikes", "support", &chat, "Ok!").await;
    let reply: Value = res.json().await.unwrap();
    assert_eq!(reply["provider"], "team", "{reply}");

    // Handed back once more, then taken up again from the conversation page:
    // the timeline says the owner reopened it, not that the visitor asked again.
    let (status, _) = api
        .json(
            Method::PUT,
            &format!("{conversation}/status"),
            json!({"status": "open"}),
        )
        .await;
    assert_eq!(status, 200);
    let page = format!("/app/conversations/{}", chat["conversationId"]);
    let res = owner
        .submit(&page, &format!("{page}/status"), &[("status", "escalated")])
        .await;
    assert_eq!(res.status(), 303);
    let (_, t) = api.get(&ticket).await;
    assert_eq!(t["status"], "open", "{t}");
    let (status, html) = owner.get(&format!("/app/tickets/{id}")).await;
    assert_eq!(status, 200);
    assert!(html.contains("reopened it"), "{html}");
    assert!(!html.contains("asked for a person again"), "{html}");
    assert!(html.contains("asked for a person"), "{html}");
}
