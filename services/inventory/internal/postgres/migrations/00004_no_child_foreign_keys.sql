-- +goose Up
-- A reservation's items are inserted in the same transaction as the reservation, and
-- reservations are never deleted: the foreign key cost a lookup of the reservation per item
-- and checked nothing that write does not ensure.
ALTER TABLE reservation_items DROP CONSTRAINT reservation_items_reservation_id_fkey;

-- +goose Down
ALTER TABLE reservation_items ADD CONSTRAINT reservation_items_reservation_id_fkey
    FOREIGN KEY (reservation_id) REFERENCES reservations (id);
