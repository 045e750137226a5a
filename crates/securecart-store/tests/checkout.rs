//! Checkouts against a real SQLite store: an order is undone only when no payment attempt
//! on it may still charge, so concurrent retries of one idempotency key never lose a paid
//! order or charge twice.

use securecart_store::{
    Category, CheckoutRequest, CheckoutStart, OrderStatus, PaymentOutcome, Product, SqliteStore,
    Store,
};

async fn store_with_a_cart() -> (tempfile::TempDir, SqliteStore) {
    let directory = tempfile::tempdir().expect("temporary directory");
    let store = SqliteStore::open(&directory.path().join("shop.db")).expect("store opens");
    store
        .seed_catalog(
            vec![Category {
                slug: "kitchen".to_owned(),
                name: "Kitchen".to_owned(),
            }],
            vec![Product {
                id: 1,
                name: "Oak spoon".to_owned(),
                description: "A spoon".to_owned(),
                category: "kitchen".to_owned(),
                category_name: "Kitchen".to_owned(),
                price_minor: 500,
                currency: "EUR".to_owned(),
                stock: 10,
            }],
        )
        .await
        .expect("seeded");
    store.add_to_cart("s1", 1, 2).await.expect("added");
    (directory, store)
}

fn request(order_id: &str) -> CheckoutRequest {
    CheckoutRequest {
        session: "s1".to_owned(),
        idempotency_key: "key-0001".to_owned(),
        fingerprint: "same".to_owned(),
        order_id: order_id.to_owned(),
        email: "a@example.com".to_owned(),
        name: "A".to_owned(),
        address: "1 Road".to_owned(),
        card_token: "tok_visa".to_owned(),
    }
}

async fn stock(store: &SqliteStore) -> i64 {
    store
        .product(1)
        .await
        .expect("read")
        .expect("product")
        .stock
}

async fn begin(store: &SqliteStore, order_id: &str) -> (String, bool) {
    match store
        .begin_checkout(request(order_id))
        .await
        .expect("begin")
    {
        CheckoutStart::Created(order) => (order.id, true),
        CheckoutStart::Existing(order) => (order.id, false),
    }
}

#[tokio::test]
async fn an_attempt_that_charged_nothing_undoes_the_order_when_it_is_the_only_one() {
    let (_directory, store) = store_with_a_cart().await;
    let (order, created) = begin(&store, "ord_1").await;
    assert!(created);
    assert_eq!(stock(&store).await, 8, "stock reserved");
    store.abandon_checkout(&order).await.expect("abandon");
    assert!(store.order(&order).await.expect("read").is_none());
    assert_eq!(stock(&store).await, 10, "stock released");
    // The key is free again: a retry makes a new order.
    assert_eq!(begin(&store, "ord_2").await, ("ord_2".to_owned(), true));
}

#[tokio::test]
async fn a_failed_attempt_leaves_the_order_to_a_concurrent_attempt_that_charges() {
    let (_directory, store) = store_with_a_cart().await;
    let (order, _) = begin(&store, "ord_1").await;
    // A second request with the same key starts charging the same order.
    assert_eq!(begin(&store, "ord_x").await, (order.clone(), false));
    // The first finds the provider down: nothing is undone while the second is in flight.
    store.abandon_checkout(&order).await.expect("abandon");
    let pending = store.order(&order).await.expect("read").expect("kept");
    assert_eq!(pending.status, OrderStatus::PendingPayment);
    assert_eq!(stock(&store).await, 8);
    // The second's charge went through: the order is paid.
    let paid = store
        .complete_checkout(
            &order,
            PaymentOutcome::Approved {
                charge_id: "ch_1".to_owned(),
            },
        )
        .await
        .expect("complete");
    assert_eq!(paid.status, OrderStatus::Paid);
    assert_eq!(stock(&store).await, 8);
}

#[tokio::test]
async fn an_order_that_may_have_been_charged_is_never_undone() {
    let (_directory, store) = store_with_a_cart().await;
    let (order, _) = begin(&store, "ord_1").await;
    // The provider did not confirm: the order stays pending.
    store.suspend_checkout(&order).await.expect("suspend");
    // A retry of the key finds the provider down; the order is still not undone, since the
    // first attempt may have charged.
    assert_eq!(begin(&store, "ord_x").await, (order.clone(), false));
    store.abandon_checkout(&order).await.expect("abandon");
    let pending = store.order(&order).await.expect("read").expect("kept");
    assert_eq!(pending.status, OrderStatus::PendingPayment);
    assert_eq!(stock(&store).await, 8);
    // A later retry completes it.
    assert_eq!(begin(&store, "ord_y").await, (order.clone(), false));
    let declined = store
        .complete_checkout(
            &order,
            PaymentOutcome::Declined {
                charge_id: "ch_2".to_owned(),
                decline_code: "card_declined".to_owned(),
            },
        )
        .await
        .expect("complete");
    assert_eq!(declined.status, OrderStatus::PaymentDeclined);
    assert_eq!(stock(&store).await, 10, "a decline releases the stock");
}

/// A paid order takes from the cart what it ordered: a line raised while its checkout
/// was pending keeps the rest, and a line it took whole goes.
#[tokio::test]
async fn a_paid_order_takes_from_the_cart_only_what_it_ordered() {
    let (_directory, store) = store_with_a_cart().await;
    let (order, _) = begin(&store, "ord_1").await;
    store.suspend_checkout(&order).await.expect("suspend");
    // Two spoons ordered; the shopper raises the line to five meanwhile.
    store.set_cart_quantity("s1", 1, 5).await.expect("raised");
    assert_eq!(begin(&store, "ord_x").await, (order.clone(), false));
    let approved = || PaymentOutcome::Approved {
        charge_id: "ch_1".to_owned(),
    };
    let paid = store
        .complete_checkout(&order, approved())
        .await
        .expect("complete");
    assert_eq!(paid.status, OrderStatus::Paid);
    let cart = store.cart("s1").await.expect("cart");
    assert_eq!(
        cart.iter()
            .map(|line| (line.product_id, line.quantity))
            .collect::<Vec<_>>(),
        [(1, 3)]
    );
    // An order of the whole line empties it.
    let mut whole = request("ord_2");
    whole.idempotency_key = "key-0002".to_owned();
    let CheckoutStart::Created(second) = store.begin_checkout(whole).await.expect("begin") else {
        panic!("a new order");
    };
    store
        .complete_checkout(&second.id, approved())
        .await
        .expect("complete");
    assert!(store.cart("s1").await.expect("cart").is_empty());
}
