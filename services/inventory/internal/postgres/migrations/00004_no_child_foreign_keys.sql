-- +goose Up
-- A reservation's items are inserted in the same transaction as the reservation, and
-- reservations are never deleted: the foreign key cost a lookup of the reservation per item
-- and checked nothing that write does not ensure.
-- The previous release writes these tables while this runs. Dropping a foreign key locks the
-- child table, then the parent; its transactions lock the parent, then the child, and one of
-- them deadlocked with this (the new replica then exited). The parent first, as they do, held
-- the few milliseconds this takes.
LOCK TABLE reservations IN ACCESS EXCLUSIVE MODE;
ALTER TABLE reservation_items DROP CONSTRAINT reservation_items_reservation_id_fkey;

-- +goose Down
ALTER TABLE reservation_items ADD CONSTRAINT reservation_items_reservation_id_fkey
    FOREIGN KEY (reservation_id) REFERENCES reservations (id);
