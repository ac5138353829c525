"""The application of seed 004: three Customer models over the tables they map.

Seed 004 (three Customer models, two tables) describes them; SQLAlchemy 1.4
(Debian's python3-sqlalchemy) writes them the classic way, each in its own
declarative registry, as in the seed (they were split to avoid cross-registry
problems):

  db.models.core.Customer          core.customers   UUID id, first_name,
                                                    last_name, email unique,
                                                    phone, preferences,
                                                    marketing_consent, JSONB
                                                    metadata, timestamps
  db.models.core.Booking           core.bookings    FK to core.customers
  models.customer.Customer         customers        the legacy table: integer
                                                    id, first_name/last_name,
                                                    status, notifications,
                                                    loyalty...
  models.booking.Booking           bookings         FK to the legacy customers
  api.ai.endpoints.AICustomer      ai_customers     String(36) id, email, one
                                                    `name`, phone
  api.ai.endpoints.Conversation    conversations    customer_id String(36)
                                                    pointing at ai_customers,
                                                    with no foreign key

The core models are schema-qualified (`core`), as in the seed.  The legacy
and AI models name no schema, as in the seed (their table was
`public.customers`): the application's search_path decides which relation
they reach.  The merge issue puts them on their own tables, so their engine
runs with `search_path=legacy,public`; after cutover the same models run with
`search_path=<merge>_compat,legacy,public` and reach the compatibility views.
"""
import enum
import uuid
from datetime import datetime

from sqlalchemy import (JSON, Boolean, Column, DateTime, Enum, ForeignKey,
                        Integer, MetaData, String, Text, func, text)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import declarative_base, relationship

# ---------------------------------------------------------------- core
# apps/backend/src/db/models/core.py: the PRIMARY model (new architecture)
CoreBase = declarative_base(metadata=MetaData())


class Customer(CoreBase):
    """db.models.core.Customer: core.customers, the single source of truth."""
    __tablename__ = "customers"
    __table_args__ = {"schema": "core"}

    # a server-side default too: the merge makes keys of new core rows with it
    id = Column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4, server_default=text("gen_random_uuid()"))
    first_name = Column(String(100), nullable=False)
    last_name = Column(String(100), nullable=False)
    email = Column(String(255), nullable=False, unique=True, index=True)
    phone = Column(String(32), nullable=False, index=True)
    preferred_contact_method = Column(String(20))
    dietary_restrictions = Column(Text)
    marketing_consent = Column(Boolean, nullable=False, default=False, server_default="false")
    customer_metadata = Column(JSONB, nullable=False, default=dict, server_default="{}")
    created_at = Column(DateTime(timezone=True), nullable=False, server_default=func.now())
    updated_at = Column(DateTime(timezone=True), nullable=False, server_default=func.now(),
                        onupdate=func.now())

    bookings = relationship("Booking", back_populates="customer")

    def __repr__(self):
        return f"<core.Customer {self.email}>"


class Booking(CoreBase):
    """db.models.core.Booking: core.bookings."""
    __tablename__ = "bookings"
    __table_args__ = {"schema": "core"}

    id = Column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    customer_id = Column(UUID(as_uuid=True), ForeignKey("core.customers.id"), nullable=False, index=True)
    event_date = Column(DateTime(timezone=True), nullable=False)
    guests = Column(Integer, nullable=False, default=2)
    total_cents = Column(Integer, nullable=False)

    customer = relationship("Customer", back_populates="bookings")


# ---------------------------------------------------------------- legacy
# apps/backend/src/models/customer.py: the LEGACY model (old architecture,
# BaseModel with integer ids and naive timestamps)
LegacyBase = declarative_base(metadata=MetaData())


class CustomerStatus(enum.Enum):
    active = "active"
    inactive = "inactive"
    suspended = "suspended"
    vip = "vip"


class LegacyCustomer(LegacyBase):
    """models.customer.Customer: the legacy integer-id table."""
    __tablename__ = "customers"
    __table_args__ = {"extend_existing": True}

    id = Column(Integer, primary_key=True, autoincrement=True)
    first_name = Column(String(50), nullable=False)
    last_name = Column(String(50), nullable=False)
    email = Column(String(255), nullable=False, unique=True, index=True)
    phone = Column(String(32), index=True)
    status = Column(Enum(CustomerStatus, name="customer_status"), nullable=False,
                    default=CustomerStatus.active)
    dietary_preferences = Column(Text)           # a JSON string
    special_notes = Column(Text)
    email_notifications = Column(Boolean, nullable=False, default=True)
    sms_notifications = Column(Boolean, nullable=False, default=False)
    marketing_emails = Column(Boolean, nullable=False, default=False)
    date_of_birth = Column(DateTime)
    anniversary_date = Column(DateTime)
    loyalty_points = Column(Integer, nullable=False, default=0)
    total_visits = Column(Integer, nullable=False, default=0)
    total_spent = Column(Integer, nullable=False, default=0)   # cents
    last_booking_date = Column(DateTime)
    last_visit_date = Column(DateTime)
    created_at = Column(DateTime, nullable=False, default=datetime.utcnow)
    updated_at = Column(DateTime, nullable=False, default=datetime.utcnow, onupdate=datetime.utcnow)

    bookings = relationship("LegacyBooking", back_populates="customer")

    def __repr__(self):
        return f"<models.customer.Customer {self.id} {self.email}>"


class LegacyBooking(LegacyBase):
    """models.booking.Booking: bookings of the old booking system."""
    __tablename__ = "bookings"
    __table_args__ = {"extend_existing": True}

    id = Column(Integer, primary_key=True, autoincrement=True)
    customer_id = Column(Integer, ForeignKey("customers.id"), nullable=False, index=True)
    booking_date = Column(DateTime, nullable=False)
    party_size = Column(Integer, nullable=False, default=2)
    total_cents = Column(Integer, nullable=False, default=0)

    customer = relationship("LegacyCustomer", back_populates="bookings")


# ---------------------------------------------------------------- AI
# apps/backend/src/api/ai/endpoints/models.py: the DUPLICATE model
AIBase = declarative_base(metadata=MetaData())


class AICustomer(AIBase):
    """api.ai.endpoints.models.AICustomer: String(36) ids and a single name."""
    __tablename__ = "ai_customers"
    __table_args__ = {"extend_existing": True}

    id = Column(String(36), primary_key=True, default=lambda: str(uuid.uuid4()))
    email = Column(String(255), unique=True, index=True)
    name = Column(String(200))
    phone = Column(String(32))
    created_at = Column(DateTime, nullable=False, default=datetime.utcnow)
    updated_at = Column(DateTime, nullable=False, default=datetime.utcnow, onupdate=datetime.utcnow)

    conversations = relationship(
        "Conversation", back_populates="customer",
        primaryjoin="AICustomer.id == foreign(Conversation.customer_id)")


class Conversation(AIBase):
    """The AI chat conversation: customer_id String(36), no foreign key."""
    __tablename__ = "conversations"
    __table_args__ = {"extend_existing": True}

    id = Column(String(36), primary_key=True, default=lambda: str(uuid.uuid4()))
    customer_id = Column(String(36), index=True)
    channel = Column(String(20), nullable=False, default="web")
    channel_metadata = Column(JSON)
    created_at = Column(DateTime, nullable=False, default=datetime.utcnow)

    customer = relationship(
        "AICustomer", back_populates="conversations",
        primaryjoin="AICustomer.id == foreign(Conversation.customer_id)")
