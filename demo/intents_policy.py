"""Policy intents: returns, refunds, orders, payments, discounts, services and accounts.

Each has one checkable fact (a number or a fixed phrase) and a few plausible wrong values.
Several take an optional product or order number, which the best answer repeats back.
"""
from __future__ import annotations

from demo.facts import FURNITURE
from demo.spec import Intent

RETURNS_WINDOW = Intent(
    name="returns_window", kind="days", mode="curt", optional=("product",),
    templates=(
        "What is your return policy?",
        "How long do I have to return the {product}?",
        "Can I still return something I bought three weeks ago?",
        "What's the time limit for sending back the {product}?",
        "How many days do I have to return an item?",
        "Can I return the {product} if I don't like it?",
        "What's the deadline for returns?",
        "If I change my mind, how long do I have to bring it back?",
    ),
    cues=((r"\breturn|sending back|send it back|bring it back", 3.0),),
    fact="30 days", wrong=("14 days", "60 days", "90 days"),
    says=("You can return items within {v} of delivery.", "Returns are accepted within {v} of delivery.",
          "You can return the {product} within {v} of delivery."),
    bare=("Within {v}.", "{v} from delivery."),
    extras=("Items should be unused and in their original packaging.",
            "Return shipping is free with the prepaid label in your box."),
)

REFUND_TIMING = Intent(
    name="refund_timing", kind="bdays",
    templates=(
        "How long does a refund take?",
        "When will I get my money back after a return?",
        "How many days until my refund shows up?",
        "I sent my return back. When does the refund hit my card?",
        "How fast do you process refunds?",
        "When do refunds go through?",
        "How long after you get my return do I see the refund?",
        "What's the usual wait for a refund?",
    ),
    cues=((r"refund|money back", 5.0),),
    fact="5-7 business days", wrong=("1-2 business days", "10-14 business days", "3-4 business days"),
    says=("Refunds are issued within {v} after we receive your return.",
          "Once your return arrives, the refund takes {v}."),
    bare=("{v}.",),
    extras=("You'll get an email as soon as the refund is issued.",
            "The money goes back to your original payment method."),
)

ORDER_STATUS = Intent(
    name="order_status", kind="named", weight=1.5, optional=("order",),
    templates=(
        "Where is my order?",
        "Can you check the status of order {order}?",
        "How do I track my package?",
        "My order {order} hasn't shown up yet. Where is it?",
        "What's the status of my order {order}?",
        "How can I see where my delivery is?",
        "Has order {order} shipped yet?",
        "Any update on my order? I'd like to follow its progress.",
    ),
    cues=((r"where is my|status|\btrack|shipped yet|shown up|update on my order|where my delivery", 5.0),),
    fact="My Orders page", wrong=("Account Settings page", "Wishlist page", "Gift Cards page"),
    says=("You can track your order on the {v} in your account.",
          "I see you're asking about order {order}. You can follow it on the {v} in your account.",
          "For order {order}, the {v} in your account shows every tracking update."),
    bare=("Check the {v}.",),
    extras=("A tracking link is also emailed to you when it ships.", "Most orders ship within 1 business day."),
)

PAYMENT_METHODS = Intent(
    name="payment_methods", kind="named",
    templates=(
        "What payment methods do you accept?",
        "Can I pay with PayPal?",
        "Which credit cards do you take?",
        "What are my options for paying at checkout?",
        "Do you accept American Express?",
        "How can I pay for my order?",
        "What forms of payment can I use?",
        "Is it possible to pay by Mastercard or do you only take Visa?",
    ),
    cues=((r"payment method|forms of payment|pay with|pay by|credit cards?|\baccept\b|paypal|options for paying|"
           r"how can i pay", 5.0),),
    fact="Visa, Mastercard, American Express and PayPal",
    wrong=("Visa and cash only", "PayPal only", "bank transfer only"),
    says=("We accept {v}.", "You can pay with {v}."),
    bare=("{v}.",),
    extras=("Maple & Pine gift cards work at checkout too.", "Your card is only charged when the order ships."),
)

GIFT_CARDS = Intent(
    name="gift_cards", kind="named",
    templates=(
        "Do your gift cards expire?",
        "How long is a gift card good for?",
        "Is there an expiration date on Maple & Pine gift cards?",
        "My aunt gave me a gift card years ago. Can I still use it?",
        "Will my gift card run out if I don't use it?",
        "How long can I keep a gift card before using it?",
        "Are gift cards valid forever?",
        "Does the balance on a gift card have a time limit?",
    ),
    cues=((r"gift ?cards?", 5.0),),
    fact="never expire", wrong=("expire after one year", "expire after six months", "expire after two years"),
    says=("Our gift cards {v}.", "Maple & Pine gift cards {v}."),
    bare=("They {v}.",),
    extras=("You can check the balance at checkout.", "They come in amounts from $25 to $500."),
)

PRICE_MATCH = Intent(
    name="price_match", kind="days", optional=("product",),
    templates=(
        "Do you price match?",
        "If the {product} is cheaper somewhere else, will you match it?",
        "Can you match a competitor's price?",
        "I found a lower price elsewhere. Will you beat or match it?",
        "What's your price matching policy?",
        "Will you match the price if I find the {product} for less?",
        "Do you offer price matching after I buy?",
        "A competitor sells the {product} for less. Can you honor that price?",
    ),
    cues=((r"\bmatch|lower price|for less|cheaper|honou?r that price", 5.0),),
    fact="14 days", wrong=("7 days", "30 days", "60 days"),
    says=("We match a competitor's lower price within {v} of your purchase.",
          "If you find the {product} for less, we'll match the price within {v} of purchase."),
    bare=("Within {v} of purchase.",),
    extras=("Just send us a link to the lower price.", "The item has to be identical and in stock at the other store."),
)

LOYALTY = Intent(
    name="loyalty_program", kind="money",
    templates=(
        "Do you have a loyalty program?",
        "How do rewards points work?",
        "What are Maple Rewards points worth?",
        "Is there a way to earn points when I shop with you?",
        "How much is 100 points worth?",
        "Tell me about your rewards program.",
        "What do I get for signing up for rewards?",
        "Do frequent shoppers get any perks?",
    ),
    cues=((r"loyal|rewards?\b|\bpoints\b|perks|frequent", 5.0),),
    fact="$5", wrong=("$1", "$10", "$20"),
    says=("With Maple Rewards you earn 1 point per dollar, and every 100 points is worth {v} off.",
          "Every 100 Maple Rewards points gives you {v} off your next order."),
    bare=("100 points = {v} off.",),
    extras=("Joining is free at checkout.", "Members also get early access to sales."),
)

EXCHANGES = Intent(
    name="exchanges", kind="days", optional=("product",),
    templates=(
        "Can I exchange an item?",
        "How long do I have to exchange the {product}?",
        "Can I swap the {product} for a different color?",
        "I'd like to trade my item for another size. Is there a deadline?",
        "What's your exchange policy?",
        "Is it possible to exchange something I bought online?",
        "How many days do I have to swap an item?",
        "Could I switch the {product} for another one?",
    ),
    cues=((r"exchang|\bswap|\btrade\b|\bswitch\b", 5.0),),
    fact="60 days", wrong=("14 days", "30 days", "90 days"),
    says=("You can exchange items within {v} of delivery.", "You can exchange the {product} within {v} of delivery."),
    bare=("Within {v}.",),
    extras=("Exchanges ship free.", "Bring it to any store or start it from your account."),
)

DAMAGED = Intent(
    name="damaged_delivery", kind="nhours", optional=("product",),
    templates=(
        "My order arrived damaged. What should I do?",
        "The {product} came broken. Can you help?",
        "What do I do if my delivery is damaged?",
        "The box showed up crushed and the {product} inside is cracked. What now?",
        "My {product} arrived with a crack. How do I report it?",
        "How do I report a damaged package?",
        "Part of my order was broken in shipping. What are my options?",
        "Something in my shipment is smashed. Who do I tell?",
    ),
    cues=((r"damag|broken|\bbroke\b|crack|crushed|smashed|scratch", 6.0),),
    fact="48 hours", wrong=("12 hours", "24 hours", "72 hours"),
    says=("Please report it within {v} of delivery with a few photos, and we'll make it right.",
          "Please report the damaged {product} within {v} of delivery with a few photos."),
    bare=("Report it within {v} with photos.",),
    extras=("We'll ship a free replacement right away.", "You don't need to send the damaged item back."),
)

INTERNATIONAL = Intent(
    name="international_shipping", kind="money", forbids=("zip",),
    templates=(
        "Do you ship internationally?",
        "Can you send orders to Canada?",
        "Do you deliver outside the US?",
        "I live abroad. Can I still order from you?",
        "How much is shipping to Canada?",
        "Which countries do you ship to?",
        "Is overseas shipping available?",
        "Can a friend in Toronto order from your website?",
    ),
    cues=((r"canada|international|abroad|outside the us|overseas|countries|toronto", 6.0),),
    fact="$25", wrong=("$15", "$40", "$50"),
    says=("We ship to Canada for a flat {v} per order.",
          "Right now we ship within the US and to Canada, at a flat {v} for Canadian orders."),
    bare=("Canada only, flat {v}.",),
    extras=("Customs fees are included in that price.", "Delivery to Canada takes 7-10 business days."),
)

GIFT_WRAPPING = Intent(
    name="gift_wrapping", kind="money", mode="curt", optional=("product",),
    templates=(
        "Do you offer gift wrapping?",
        "Can you gift wrap the {product}?",
        "How much is gift wrap?",
        "Could you wrap the {product} as a present?",
        "Is gift wrapping available online?",
        "What does it cost to have my order gift wrapped?",
        "Can I get the {product} wrapped for a birthday?",
        "Do you do present wrapping, and what's the charge?",
    ),
    cues=((r"\bwrap", 9.0),),
    fact="$5", wrong=("$3", "$8", "$10"),
    says=("Gift wrapping is {v} per item.", "We can gift wrap the {product} for {v}."),
    bare=("{v} per item.",),
    extras=("You can add a handwritten note for free.", "Just tick the gift wrap box at checkout."),
)

PASSWORD = Intent(
    name="password_reset", kind="minutes",
    templates=(
        "I forgot my password. How do I reset it?",
        "How can I change my account password?",
        "I can't log in to my account. What should I do?",
        "I'm locked out of my account. Help?",
        "Where do I reset my password?",
        "My password isn't working. How do I get back in?",
        "How do I recover my Maple & Pine account?",
        "I keep getting a login error. Can you help me sign in?",
    ),
    cues=((r"password|log ?in\b|locked out|sign in|recover my", 6.0),),
    fact="10 minutes", wrong=("2 minutes", "30 minutes", "60 minutes"),
    says=("Click 'Forgot password' on the sign-in page, and the reset email arrives within {v}.",
          "Use the 'Forgot password' link on the sign-in page. The reset email comes within {v}."),
    bare=("Use 'Forgot password'. Email within {v}.",),
    extras=("Check your spam folder if it doesn't show up.", "The reset link works for one hour."),
)

CANCEL = Intent(
    name="cancel_order", kind="nhours", mode="curt", optional=("order",),
    templates=(
        "How do I cancel my order?",
        "Can I cancel order {order}?",
        "Is it too late to cancel my purchase?",
        "I changed my mind about order {order}. Can I call it off?",
        "How long do I have to cancel an order?",
        "I need to cancel order {order}.",
        "Can an order be cancelled after I place it?",
        "Please stop my order from going out, I don't want it anymore.",
    ),
    cues=((r"cancel|call it off|stop my order", 8.0),),
    fact="2 hours", wrong=("12 hours", "24 hours", "48 hours"),
    says=("Orders can be cancelled within {v} of placing them.",
          "Order {order} can be cancelled as long as it's within {v} of placing it."),
    bare=("Within {v} of ordering.",),
    extras=("After that, you can return it once it arrives.", "You can cancel from the My Orders page."),
)

ASSEMBLY = Intent(
    name="assembly_service", kind="money", optional=("product",), choices=(("product", FURNITURE),),
    templates=(
        "Do you offer assembly?",
        "Can someone assemble the {product} for me?",
        "How much is furniture assembly?",
        "Will your team put the {product} together?",
        "What does it cost to have the {product} assembled?",
        "Do you have an assembly service for bigger items?",
        "Can you build the {product} when it's delivered?",
        "I'm not handy. Can you set up the {product} for me?",
    ),
    cues=((r"assembl|put (it|the|\w+) .*together|\bbuild\b|set up|set it up", 6.0),),
    fact="$39", wrong=("$19", "$59", "$79"),
    says=("Our assembly service is {v} per item.", "We can assemble the {product} for {v}."),
    bare=("{v} per item.",),
    extras=("Our team books a time within 3 days of delivery.", "They take the packaging away too."),
)

FREE_SHIPPING = Intent(
    name="free_shipping", kind="money", forbids=("zip",),
    templates=(
        "Do you offer free shipping?",
        "What's the minimum order for free shipping?",
        "How much do I need to spend to get free delivery?",
        "Is there a threshold where shipping becomes free?",
        "When is shipping free?",
        "Can I get free shipping on my order?",
        "How much do I have to spend for free shipping?",
        "Do you ever waive the delivery fee?",
    ),
    cues=((r"free (shipping|delivery)|waive|shipping (becomes |is )?free", 6.0),),
    fact="$75", wrong=("$50", "$100", "$150"),
    says=("Shipping is free on orders over {v}.", "Any order over {v} ships free."),
    bare=("Orders over {v}.",),
    extras=("Below that, standard rates depend on your ZIP code.", "It applies to standard shipping within the US."),
)

EXPRESS = Intent(
    name="express_shipping", kind="money", mode="curt", forbids=("zip",),
    templates=(
        "Do you have express shipping?",
        "How much is expedited delivery?",
        "Can I get my order faster?",
        "Is there a rush delivery option?",
        "What does express shipping cost?",
        "Can I pay extra for faster shipping?",
        "How much for next-day or express delivery?",
        "I need it soon. Do you have a speedy shipping upgrade?",
    ),
    cues=((r"(?<!american )express|expedit|faster|\brush\b|speedy|next-day", 6.0),),
    fact="$19", wrong=("$9", "$29", "$39"),
    says=("Express shipping is {v} and arrives in 2 business days.", "Our express option costs {v} and takes 2 "
                                                                     "business days."),
    bare=("{v}, 2 business days.",),
    extras=("Order by 1pm for same-day dispatch.", "It's available for most items under 50 pounds."),
)

INTENTS = (RETURNS_WINDOW, REFUND_TIMING, ORDER_STATUS, PAYMENT_METHODS, GIFT_CARDS, PRICE_MATCH, LOYALTY,
           EXCHANGES, DAMAGED, INTERNATIONAL, GIFT_WRAPPING, PASSWORD, CANCEL, ASSEMBLY, FREE_SHIPPING, EXPRESS)
